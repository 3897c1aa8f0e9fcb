"""`POST /webhooks/gitlab`: GitLab's pipeline hooks, checked with `X-Gitlab-Token`.

A hook only says "look again": it makes the pipeline's run due at once, and the
worker that takes it reads the pipeline from GitLab's API before it records or
reports anything (the hook's body is never trusted for the status). A lost
hook costs only time: running pipelines are read every RECONCILE_INTERVAL.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from middleware.schedule import poke
from middleware.services import services

bp = Blueprint("gitlab_hooks", __name__, url_prefix="/webhooks")

#: GitLab's ids are 64-bit; anything else is not a pipeline of ours.
MAX_ID = 2**63 - 1


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
    pipeline_id = attributes.get("id") if isinstance(attributes, dict) else None
    if not isinstance(pipeline_id, int) or isinstance(pipeline_id, bool) or not 0 < pipeline_id <= MAX_ID:
        return _text(400, "pipeline event without a valid object_attributes.id")
    try:
        run_id = poke(svc.db, pipeline_id)
    except SQLAlchemyError:
        return _text(503, "storage unavailable; try again")
    if run_id is None:
        return _text(202, "no run for this pipeline")
    return _text(202, f"following run {run_id}")
