"""`POST /api/runs/<id>/cancel|retry|restart`: the run actions for whoever holds the admin token.

The same actions as the run viewer's buttons (middleware.runs.actions), recorded as done by
`operator`. Answers are JSON: the outcome, or `{"error": ...}` with the refusal's status.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from middleware.registry.api import ApiProblem, admin_only
from middleware.runs.actions import ACTIONS, ActionRefused, RunControl
from middleware.services import services
from middleware.web.links import run_page

bp = Blueprint("runs_api", __name__, url_prefix="/api/runs")
#: runs.id is a 32-bit integer: a larger id names no run (and PostgreSQL refuses it).
MAX_RUN_ID = 2**31 - 1
OPERATOR = "operator"


@bp.errorhandler(ApiProblem)
def _problem(error: ApiProblem) -> tuple[Response, int]:
    return jsonify({"error": error.message}), error.status


def run_action(action: str, run_id: int, actor: str) -> tuple[Response, int]:
    """Do `action` on the run; 404 for an id that names no run, the refusal's status otherwise."""
    if run_id > MAX_RUN_ID:
        raise ApiProblem(404, f"there is no run {run_id}")
    svc = services()
    try:
        outcome = ACTIONS[action](RunControl.build(svc.settings, svc.db), run_id, actor)
    except ActionRefused as refusal:
        raise ApiProblem(refusal.status, refusal.message) from None
    body: dict[str, object] = {
        "run_id": outcome.run_id,
        "action": outcome.action,
        "message": outcome.message,
        "run_url": run_page(svc.settings.public_url, outcome.run_id),
    }
    if outcome.new_run_id is not None:
        body["new_run_id"] = outcome.new_run_id
        body["new_run_url"] = run_page(svc.settings.public_url, outcome.new_run_id)
    return jsonify(body), 201 if outcome.new_run_id is not None else 200


@bp.post("/<int:run_id>/cancel")
@admin_only
def cancel_run(run_id: int) -> tuple[Response, int]:
    return run_action("cancel", run_id, OPERATOR)


@bp.post("/<int:run_id>/retry")
@admin_only
def retry_run(run_id: int) -> tuple[Response, int]:
    return run_action("retry", run_id, OPERATOR)


@bp.post("/<int:run_id>/restart")
@admin_only
def restart_run(run_id: int) -> tuple[Response, int]:
    return run_action("restart", run_id, OPERATOR)
