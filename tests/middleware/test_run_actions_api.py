"""`POST /api/runs/<id>/cancel|retry|restart`: admin token only, JSON answers, actions recorded as
done by `operator`, refusals readable. Without a managed GitLab configured (on both databases);
the actions on real pipelines are in test_run_actions and test_web_runs."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update

from middleware.models import Repository, Run, RunAction, utcnow
from middleware.runs.schedule import record_run
from middleware.services import Services
from tests.middleware.conftest import ADMIN, admin


def a_run(svc: Services, repo: dict[str, Any], sha: str = "a" * 40, **columns: Any) -> int:
    run_id = record_run(
        svc.db,
        {"repository_id": repo["id"], "pipeline": "cpu", "sha": sha, "kind": "push", "ref": "main"},
    )
    if columns:
        with svc.db.session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**columns))
    return run_id


def test_restart_answers_the_new_run_and_records_the_operator(
    client: FlaskClient, svc: Services, registered: dict[str, Any]
) -> None:
    run_id = a_run(svc, registered, state="failed")
    answer = client.post(f"/api/runs/{run_id}/restart", headers=admin())
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body = answer.get_json()
    new_id = body["new_run_id"]
    assert body["action"] == "restart" and body["run_id"] == run_id
    assert body["new_run_url"] == f"https://ci.example.org/runs/{new_id}"
    with svc.db.session() as session:
        new = session.get(Run, new_id)
        assert new is not None and (new.attempt, new.requested_by, new.state) == (2, "operator", "queued")
        (action,) = session.scalars(select(RunAction).where(RunAction.run_id == run_id))
        assert (action.action, action.actor, action.new_run_id) == ("restart", "operator", new_id)


def test_cancel_of_a_queued_run_ends_it_and_a_second_cancel_is_refused(
    client: FlaskClient, svc: Services, registered: dict[str, Any]
) -> None:
    run_id = a_run(svc, registered)
    answer = client.post(f"/api/runs/{run_id}/cancel", headers=admin())
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["message"] == f"run {run_id} canceled"
    with svc.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None and (run.state, run.error) == ("canceled", "canceled by operator")
    again = client.post(f"/api/runs/{run_id}/cancel", headers=admin())
    assert again.status_code == 409
    assert again.get_json() == {
        "error": f"run {run_id} already ended canceled; nothing to cancel (restart it to run again)"
    }


#: (action, the run's columns, status, words of the refusal)
REFUSALS: list[tuple[str, dict[str, Any], int, str]] = [
    ("retry", {}, 409, "no GitLab pipeline"),
    ("retry", {"state": "success", "gitlab_pipeline_id": 7}, 409, "no job failed"),
    ("retry", {"state": "running", "gitlab_pipeline_id": 7}, 409, "once it has ended"),
    (
        "retry",
        {"state": "canceled", "gitlab_pipeline_id": 7, "error": "superseded by a newer commit"},
        409,
        "superseded",
    ),
    ("retry", {"state": "failed", "gitlab_pipeline_id": 7}, 503, "no managed GitLab"),
    ("restart", {"state": "running"}, 409, "cancel it first"),
    ("cancel", {"state": "success"}, 409, "already ended success"),
    ("cancel", {"state": "running", "gitlab_pipeline_id": 7}, 503, "no managed GitLab"),
]


def test_actions_that_make_no_sense_are_refused_readably(
    client: FlaskClient, svc: Services, registered: dict[str, Any]
) -> None:
    for number, (action, columns, status, words) in enumerate(REFUSALS):
        run_id = a_run(svc, registered, sha=f"{number:040x}", **columns)
        answer = client.post(f"/api/runs/{run_id}/{action}", headers=admin())
        assert answer.status_code == status, (action, columns, answer.get_data(as_text=True))
        assert words in answer.get_json()["error"]
        with svc.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None and run.state == columns.get("state", "queued")  # unchanged
    with svc.db.session() as session:
        assert session.scalars(select(RunAction)).all() == []  # a refusal records nothing


def test_restart_of_a_disabled_repository_or_a_removed_pipeline_is_refused(
    client: FlaskClient, svc: Services, registered: dict[str, Any]
) -> None:
    run_id = a_run(svc, registered, state="failed")
    with svc.db.session() as session:
        session.execute(update(Repository).values(disabled_at=utcnow()))
    disabled = client.post(f"/api/runs/{run_id}/restart", headers=admin())
    assert disabled.status_code == 409
    assert "disabled" in disabled.get_json()["error"]
    with svc.db.session() as session:
        session.execute(update(Repository).values(disabled_at=None))
    gone = client.delete(f"/api/repositories/{registered['id']}/pipelines/cpu", headers=admin())
    assert gone.status_code == 204
    answer = client.post(f"/api/runs/{run_id}/restart", headers=admin())
    assert answer.status_code == 409
    assert answer.get_json()["error"] == "pipeline 'cpu' is no longer registered; nothing to restart"


def test_unknown_runs_are_404_and_the_admin_token_is_required(
    client: FlaskClient, svc: Services, registered: dict[str, Any]
) -> None:
    run_id = a_run(svc, registered, state="failed")
    for action in ("cancel", "retry", "restart"):
        for unknown in ("424242", str(2**31), str(2**63), "9" * 40):
            answer = client.post(f"/api/runs/{unknown}/{action}", headers=admin())
            assert answer.status_code == 404, answer.get_data(as_text=True)
            assert answer.get_json() == {"error": f"there is no run {int(unknown)}"}
        for header in (None, "Bearer wrong", f"Basic {ADMIN}", f"Bearer {ADMIN}x"):
            answer = client.post(
                f"/api/runs/{run_id}/{action}", headers={"Authorization": header} if header else {}
            )
            assert answer.status_code == 401
            assert answer.get_json() == {"error": "admin bearer token required"}
    with svc.db.session() as session:
        assert session.scalars(select(RunAction)).all() == []


def test_the_actions_are_described_in_openapi(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    for action in ("cancel", "retry", "restart"):
        operation = paths[f"/api/runs/{{run_id}}/{action}"]["post"]
        assert {"401", "404", "409"} <= set(operation["responses"])
    assert "201" in paths["/api/runs/{run_id}/restart"]["post"]["responses"]
