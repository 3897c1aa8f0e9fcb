"""`POST /webhooks/managed-gitlab/pipeline` (formerly `/webhooks/gitlab`): the managed GitLab's
pipeline hooks, checked with each project's own token.

Every mirror project's hook carries its own `X-Gitlab-Token` (made on first
use, kept encrypted with its pipeline), so a token that leaks opens one
project, not all. A hook only says "look again": it makes the pipeline's run
due at once, and the worker that takes it reads the pipeline from GitLab's API
before it records or reports anything (the hook's body is never trusted for
the status). A lost hook costs only time: running pipelines are read every
RECONCILE_INTERVAL.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from middleware.models import Pipeline
from middleware.runs.schedule import poke
from middleware.services import Services, services

bp = Blueprint("gitlab_hooks", __name__, url_prefix="/webhooks")

#: GitLab's ids are 64-bit; anything else is not a pipeline of ours.
MAX_ID = 2**63 - 1
#: repositories.id is a 32-bit integer.
MAX_REPOSITORY_ID = 2**31


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


def _project(svc: Services, project_path: object) -> tuple[int, str] | None:
    """(repository id, pipeline) of the mirror project `<group>/<repository id>/<pipeline>`."""
    group = svc.settings.gitlab_group.strip("/")
    if not isinstance(project_path, str) or not project_path.startswith(f"{group}/"):
        return None
    repository, _, name = project_path[len(group) + 1 :].partition("/")
    if not repository.isascii() or not repository.isdigit() or not 0 < int(repository) < MAX_REPOSITORY_ID:
        return None
    if not name or "/" in name or not name.isprintable() or len(name) > 100:
        return None
    return int(repository), name


def _expected_token(svc: Services, project: tuple[int, str]) -> str | None:
    """That mirror project's own token; the shared legacy token for a project made before them."""
    with svc.db.session() as session:
        found = session.execute(
            select(Pipeline.hook_token_enc).where(
                Pipeline.repository_id == project[0], Pipeline.name == project[1]
            )
        ).first()
    if found is None:
        return None
    if found[0] is None:
        return svc.settings.gitlab_webhook_token or None
    return svc.box.open(found[0])


@bp.post("/managed-gitlab/pipeline")
@bp.post("/gitlab")  # the path mirror projects' hooks had before; re-pointed when a project syncs
def gitlab_webhook() -> Response:
    svc = services()
    body = request.get_json(silent=True)
    project = body.get("project") if isinstance(body, dict) else None
    path = project.get("path_with_namespace") if isinstance(project, dict) else None
    given = request.headers.get("X-Gitlab-Token", "")
    mirror = _project(svc, path)
    try:
        expected = _expected_token(svc, mirror) if mirror is not None else None
    except SQLAlchemyError:
        return _text(503, "storage unavailable; try again")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _text(401, "X-Gitlab-Token missing or wrong for this project")
    assert isinstance(body, dict)
    if body.get("object_kind") != "pipeline":
        return _text(202, "not a pipeline event: nothing to do")
    attributes = body.get("object_attributes")
    pipeline_id = attributes.get("id") if isinstance(attributes, dict) else None
    if not isinstance(pipeline_id, int) or isinstance(pipeline_id, bool) or not 0 < pipeline_id <= MAX_ID:
        return _text(400, "pipeline event without a valid object_attributes.id")
    assert mirror is not None  # a token matched
    try:
        run_id = poke(svc.db, pipeline_id, repository_id=mirror[0], pipeline=mirror[1])
    except SQLAlchemyError:
        return _text(503, "storage unavailable; try again")
    if run_id is None:
        return _text(202, "no run for this pipeline")
    return _text(202, f"following run {run_id}")
