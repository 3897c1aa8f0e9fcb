"""The GitHub App's webhook delivery log (JWT): list with GitHub's cursor pagination, show one
delivery with its request and response, redeliver it, and read the hook configuration.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.github import web
from sandbox.github.records import Delivery

bp = Blueprint("github_hooks", __name__)


def summary_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "guid": delivery.guid,
        "delivered_at": delivery.delivered_at,
        "redelivery": delivery.redelivery,
        "duration": delivery.duration,
        "status": delivery.status,
        "status_code": delivery.status_code,
        "event": delivery.event,
        "action": delivery.action,
        "installation_id": delivery.installation_id,
        "repository_id": delivery.repository_id,
        "throttled_at": None,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        **summary_json(delivery),
        "url": delivery.url,
        "request": {"headers": delivery.request_headers, "payload": delivery.payload},
        "response": {"headers": delivery.response_headers, "payload": delivery.response_body},
    }


def _cursor_id(cursor: str | None) -> int | None:
    """The stand-in's cursors are `v1_<id>`: the page starts below that delivery id."""
    if cursor and cursor.startswith("v1_") and cursor[3:].isdigit():
        return int(cursor[3:])
    return None


@bp.get("/app/hook/deliveries")
def list_deliveries() -> Response:
    app = web.jwt_app()
    gh = web.state()
    per_page = web.int_arg("per_page", 30)
    below = _cursor_id(request.args.get("cursor"))
    wanted = request.args.get("status")
    redelivery = request.args.get("redelivery")
    found = [
        d
        for d in gh.deliveries_for(app.id)
        if (below is None or d.id < below)
        and (wanted is None or (wanted == "success") == d.ok)
        and (redelivery is None or str(d.redelivery).lower() == redelivery.lower())
    ]
    page = found[:per_page]
    response = jsonify([summary_json(d) for d in page])
    if len(found) > per_page:
        response.headers["Link"] = (
            f'<{web.base()}/app/hook/deliveries?per_page={per_page}&cursor=v1_{page[-1].id}>; rel="next"'
        )
    return response


def _own_delivery(delivery_id: int) -> Delivery | Response:
    app = web.jwt_app()
    found = next((d for d in web.state().deliveries_for(app.id) if d.id == delivery_id), None)
    return found if found is not None else web.error(404, "Not Found")


@bp.get("/app/hook/deliveries/<int:delivery_id>")
def get_delivery(delivery_id: int) -> Response:
    found = _own_delivery(delivery_id)
    return found if isinstance(found, Response) else jsonify(delivery_json(found))


@bp.post("/app/hook/deliveries/<int:delivery_id>/attempts")
def redeliver(delivery_id: int) -> Response:
    found = _own_delivery(delivery_id)
    if isinstance(found, Response):
        return found
    web.state().redeliver(found.id)
    return web.answer({}, 202)


@bp.get("/app/hook/config")
def hook_config() -> Response:
    app = web.jwt_app()
    return jsonify(
        {
            "content_type": "json",
            "insecure_ssl": "0",
            "secret": "********" if app.webhook_secret else None,
            "url": app.webhook_url,
        }
    )
