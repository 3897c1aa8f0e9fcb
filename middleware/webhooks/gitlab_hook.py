"""`POST /webhooks/gitlab`: GitLab's pipeline hooks, checked with `X-Gitlab-Token`.

A hook only says "look again": the run is followed by a task that records the
status and reports it to GitHub. A lost hook is caught by the reconciliation.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from sqlalchemy import select

from middleware.models import Run
from middleware.services import services
from middleware.tasks import FOLLOW_RUN

bp = Blueprint("gitlab_hooks", __name__, url_prefix="/webhooks")


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


@bp.post("/gitlab")
def gitlab_webhook() -> Response:
    svc = services()
    expected = svc.settings.gitlab_webhook_token
    given = request.headers.get("X-Gitlab-Token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _text(401, "X-Gitlab-Token missing or wrong")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("object_kind") != "pipeline":
        return _text(202, "not a pipeline event: nothing to do")
    attributes = body.get("object_attributes")
    if not isinstance(attributes, dict) or not isinstance(attributes.get("id"), int):
        return _text(400, "pipeline event without object_attributes.id")
    status = attributes.get("status")
    with svc.db.session() as session:
        run_id = session.scalar(select(Run.id).where(Run.gitlab_pipeline_id == attributes["id"]))
    if run_id is None:
        return _text(202, "no run for this pipeline")
    try:
        svc.celery.send_task(FOLLOW_RUN, args=[run_id, status if isinstance(status, str) else None])
    except Exception:  # noqa: BLE001 - GitLab redelivers failed hooks; the reconciliation polls anyway
        return _text(503, "queue unavailable; try again")
    return _text(202, f"following run {run_id}")
