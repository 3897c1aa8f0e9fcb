"""`POST /webhooks/gitlab`: each mirror project's own token; a hook only makes its run due."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from middleware.models import Pipeline, Run, utcnow
from middleware.runs.schedule import aware, record_run


def hook_body(repository_id: int, pipeline: str, pipeline_id: int = 900, status: str = "success") -> dict:
    return {
        "object_kind": "pipeline",
        "object_attributes": {"id": pipeline_id, "status": status},
        "project": {"id": 5, "path_with_namespace": f"firecrest-ci/{repository_id}/{pipeline}"},
    }


def seal_token(svc, repository_id: int, pipeline: str, token: str | None) -> None:
    with svc.db.session() as session:
        session.execute(
            update(Pipeline)
            .where(Pipeline.repository_id == repository_id, Pipeline.name == pipeline)
            .values(hook_token_enc=svc.box.seal(token) if token else None)
        )


def post(client, body: dict, token: str):
    return client.post("/webhooks/gitlab", json=body, headers={"X-Gitlab-Token": token})


def running_run(svc, repository_id: int, pipeline_id: int = 900) -> int:
    run_id = record_run(
        svc.db,
        {"repository_id": repository_id, "pipeline": "cpu", "ref": "main", "sha": "e" * 40, "kind": "push"},
    )
    with svc.db.session() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                state="running",
                gitlab_pipeline_id=pipeline_id,
                next_check_at=utcnow() + dt.timedelta(hours=1),
            )
        )
    return run_id


def test_a_hook_with_its_projects_token_makes_the_run_due_now(client, registered, svc):
    repo_id = registered["id"]
    seal_token(svc, repo_id, "cpu", "cpu-project-token-0123456789")
    run_id = running_run(svc, repo_id)
    answer = post(client, hook_body(repo_id, "cpu"), "cpu-project-token-0123456789")
    assert (answer.status_code, answer.get_data(as_text=True).strip()) == (202, f"following run {run_id}")
    with svc.db.session() as session:
        run = session.get(Run, run_id)
        assert aware(run.next_check_at) <= utcnow()
        assert run.state == "running"  # the body's "success" is not believed: the worker reads GitLab


def test_another_projects_token_or_no_token_is_refused(client, registered, svc):
    repo_id = registered["id"]
    seal_token(svc, repo_id, "cpu", "cpu-project-token-0123456789")
    seal_token(svc, repo_id, "gpu", "gpu-project-token-0123456789")
    running_run(svc, repo_id)
    for token in ("gpu-project-token-0123456789", "", "cpu-project-token-012345678"):
        assert post(client, hook_body(repo_id, "cpu"), token).status_code == 401
    for path in (
        "elsewhere/1/cpu",
        f"firecrest-ci/{repo_id}/nope",
        "firecrest-ci/x/cpu",
        "firecrest-ci/²/cpu",
        None,
    ):
        body = hook_body(repo_id, "cpu") | {"project": {"path_with_namespace": path}}
        assert post(client, body, "cpu-project-token-0123456789").status_code == 401
    assert client.post("/webhooks/gitlab", data=b"not json").status_code == 401


def test_the_shared_legacy_token_opens_only_projects_without_their_own(tmp_path, client, registered, svc):
    repo_id = registered["id"]
    svc.settings = svc.settings.model_copy(update={"gitlab_webhook_token": "legacy-shared-token-0123456789"})
    seal_token(svc, repo_id, "gpu", "gpu-project-token-0123456789")
    assert post(client, hook_body(repo_id, "cpu"), "legacy-shared-token-0123456789").status_code == 202
    assert post(client, hook_body(repo_id, "gpu"), "legacy-shared-token-0123456789").status_code == 401


def test_a_hook_for_a_pipeline_of_another_project_pokes_nothing(client, registered, svc):
    repo_id = registered["id"]
    seal_token(svc, repo_id, "gpu", "gpu-project-token-0123456789")
    run_id = running_run(svc, repo_id)  # a cpu run
    answer = post(client, hook_body(repo_id, "gpu"), "gpu-project-token-0123456789")
    assert answer.get_data(as_text=True).strip() == "no run for this pipeline"
    with svc.db.session() as session:
        assert aware(session.scalar(select(Run.next_check_at).where(Run.id == run_id))) > utcnow()
