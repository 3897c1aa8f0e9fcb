"""A run end to end without a broker: the middleware's steps against the GitLab stand-in
(real git, real pipelines), the FirecREST sandbox (real jobs) and the GitHub stand-in
(PyGithub), all on loopback."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import gitlab
import pytest
from sqlalchemy import select

from middleware.app import create_app
from middleware.managed_gitlab import templates_project
from middleware.managed_gitlab.pipelines import ensure_pipeline
from middleware.models import OutboxItem, Run
from middleware.runs import steps as runs
from middleware.runs.mirror import SourceRef
from middleware.runs.schedule import record_run
from middleware.services import EXTENSION
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab
from tests.gitops import ENTRYPOINT, git
from tests.middleware.conftest import ADMIN, make_settings

GH_TOKEN = "ghp_runs_notification_token_01"


class World:
    def __init__(self, tmp: Path, firecrest: Any, gl: Any, gh: Any) -> None:
        self.tmp, self.firecrest, self.gl, self.gh = tmp, firecrest, gl, gh
        self.client = gitlab.Gitlab(gl.url, private_token=gl.token)
        group = self.client.groups.create({"name": "sources", "path": "sources"})
        self.source = self.client.projects.create(
            {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
        )
        self.work = tmp / "work"
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        settings = make_settings(
            tmp,
            insecure_sandbox=True,
            gitlab_url=gl.url,
            gitlab_token=gl.token,
            gitlab_group="firecrest-ci",
            github_api_url=gh.url,
            github_write_interval=0,
            firecrest_url=firecrest.url,
            firecrest_token_url=firecrest.token_url,
        )
        self.app = create_app(settings)
        self.svc = self.app.extensions[EXTENSION]
        self.bench = runs.Workbench.build(self.svc.settings, self.svc.db, self.svc.box)
        templates_project.publish(self.client, "firecrest-ci", gl.token, "local/ci-runner:dev")
        http = self.app.test_client()
        answer = http.post(
            "/api/repositories",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={
                "full_name": "octo-org/hpc-code",
                "clone_url": self.source.http_url_to_repo,
                "notification_token": GH_TOKEN,
                "firecrest_client_id": firecrest.client_id,
                "firecrest_client_secret": firecrest.client_secret,
                "trusted_users": ["octocat"],
                "branches": ["main"],
            },
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)
        self.repo_id = answer.get_json()["id"]
        made = http.post(
            f"/api/repositories/{self.repo_id}/pipelines",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
        )
        assert made.status_code == 201

    def commit(self, script: str, ref: str = "main", entrypoint: str = ENTRYPOINT) -> str:
        (self.work / "ci").mkdir(exist_ok=True)
        (self.work / "ci" / "cpu.yml").write_text(entrypoint)
        (self.work / "ci" / "hpc-job.sh").write_text(f"#!/bin/bash\n{script}\n")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "--allow-empty", "-m", script[:40])
        sha = git(self.work, "rev-parse", "HEAD")
        url = self.source.http_url_to_repo.replace("http://", f"http://oauth2:{self.gl.token}@")
        git(self.work, "push", "-q", "--force", url, f"HEAD:{ref}")
        return sha

    def trigger(
        self, sha: str, ref: str = "main", kind: str = "push", pr: int | None = None, **variables: str
    ) -> int:
        return record_run(
            self.svc.db,
            {
                "repository_id": self.repo_id,
                "pipeline": "cpu",
                "ref": ref,
                "sha": sha,
                "kind": kind,
                "reason": "test",
                "variables": variables,
                "pr_number": pr,
            },
        )

    def run(self, run_id: int) -> Run:
        with self.svc.db.session() as session:
            found = session.get(Run, run_id)
            assert found is not None
            return found

    def mirror_project(self):
        return self.client.projects.get(f"firecrest-ci/{self.repo_id}/cpu")

    def wait_finished(self, run_id: int, timeout: float = 60) -> str:
        """Drive the run as the workers do (failures recorded, not raised) until it is final
        and its final status is posted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = runs.advance(self.bench, run_id)
            run = self.run(run_id)
            if state in ("success", "failed", "canceled", "error") and run.posted_seq == run.status_seq:
                return state
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish: {self.run(run_id).last_error}")

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        return [s for s in self.gh.state.statuses if s["sha"] == sha]


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with (
        run_sandbox(SandboxConfig(root=tmp_path / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp_path / "gitlab") as gl,
        run_github() as gh,
    ):
        gh.state.add_user("octo-bot", GH_TOKEN)
        gh.state.add_user("octocat")
        gh.state.add_repo("octo-org/hpc-code")
        world = World(tmp_path, firecrest, gl, gh)
        yield world
        world.svc.db.dispose()


def test_push_mirrors_runs_on_firecrest_and_reports_success(world):
    sha = world.commit('echo "hello from $SLURM_JOB_ID"')
    run_id = world.trigger(sha)
    assert runs.start(world.bench, run_id) == "pending"
    run = world.run(run_id)
    assert run.gitlab_pipeline_id is not None
    assert run.gitlab_pipeline_url.endswith(f"/-/pipelines/{run.gitlab_pipeline_id}")
    assert world.wait_finished(run_id) == "success"
    states = [(s["state"], s["context"]) for s in world.statuses(sha)]
    assert states == [("pending", "firecrest-ci/cpu"), ("success", "firecrest-ci/cpu")]
    assert world.statuses(sha)[-1]["target_url"].endswith(f"/runs/{run_id}")  # the run's page
    project = world.mirror_project()
    variables = {v.key: v for v in project.variables.list()}
    assert variables["FIRECREST_CLIENT_SECRET"].masked and variables["FIRECREST_CLIENT_SECRET"].protected
    pipeline_vars = {v.key for v in project.pipelines.get(run.gitlab_pipeline_id).variables.list()}
    assert "FIRECREST_CLIENT_SECRET" not in pipeline_vars  # credentials never travel as pipeline variables
    assert [b.name for b in project.branches.list()] == ["main"]


def test_failing_commit_reports_failure(world):
    sha = world.commit("echo broken; exit 3")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    assert world.wait_finished(run_id) == "failed"
    assert [s["state"] for s in world.statuses(sha)] == ["pending", "failure"]


def test_redelivery_and_a_crash_after_creation_make_no_second_pipeline(world):
    sha = world.commit("sleep 1")
    run_id = world.trigger(sha)
    assert world.trigger(sha) == run_id  # the same key records the same run
    project_spec_run = world.run(run_id)
    runs.start(world.bench, run_id)
    runs.start(world.bench, run_id)  # a redelivered task: nothing new
    project = world.mirror_project()
    assert len(project.pipelines.list(sha=sha)) == 1
    # A worker that died after GitLab created the pipeline but before recording it:
    sha2 = world.commit("sleep 1")
    second = world.trigger(sha2)
    world.bench.mirror.fetch(
        world.repo_id, world.source.http_url_to_repo, SourceRef.for_trigger("main", sha2)
    )
    world.bench.mirror.push(world.repo_id, project.http_url_to_repo, sha2, "refs/heads/main")
    created = ensure_pipeline(project, second, "main", sha2, {})
    assert runs.start(world.bench, second) == "pending"
    assert world.run(second).gitlab_pipeline_id == created.id
    assert len(project.pipelines.list(sha=sha2)) == 1
    assert project_spec_run.sha == sha


def test_a_newer_commit_cancels_the_superseded_pipeline(world):
    old = world.commit("sleep 30")
    first = world.trigger(old)
    runs.start(world.bench, first)
    time.sleep(1.0)
    new = world.commit("echo newer")
    second = world.trigger(new)
    runs.start(world.bench, second)
    assert world.run(first).state == "canceled"
    assert world.run(first).error == "superseded by a newer commit"
    assert world.run(first).next_check_at is not None  # due at once: the dispatcher hands it out
    assert runs.advance(world.bench, first) == "canceled"
    assert world.statuses(old)[-1]["state"] == "error"
    assert "superseded" in world.statuses(old)[-1]["description"]
    assert world.wait_finished(second) == "success"


def test_a_bad_entrypoint_becomes_an_error_status_with_a_reason(world):
    sha = world.commit("true", entrypoint="stages: [test]\n")
    run_id = world.trigger(sha)
    assert runs.start(world.bench, run_id) == "error"
    status = world.statuses(sha)[-1]
    assert status["state"] == "error"
    assert "at least one visible job" in status["description"]
    assert len(status["description"]) <= 140
    assert "at least one visible job" in world.run(run_id).error


def test_pull_request_heads_mirror_to_pr_branches_and_cleanup_removes_them(world):
    sha = world.commit("echo pr", ref="refs/pull/4/head")
    run_id = world.trigger(sha, ref="pr-4", kind="pull_request", pr=4)
    runs.start(world.bench, run_id)
    project = world.mirror_project()
    assert "pr-4" in [b.name for b in project.branches.list()]
    assert runs.cleanup(world.bench, world.repo_id, "pr-4") == 1
    assert "pr-4" not in [b.name for b in project.branches.list()]
    finished = world.wait_finished(run_id)
    assert finished in ("success", "canceled")


def test_comment_variables_reach_the_job_but_secrets_stay_project_variables(world):
    sha = world.commit('echo "level=$DEBUG_LEVEL"')
    run_id = world.trigger(sha, ref="pr-9", kind="comment", pr=9, DEBUG_LEVEL="3")
    world.commit('echo "level=$DEBUG_LEVEL"', ref="refs/pull/9/head")
    runs.start(world.bench, run_id)
    assert world.wait_finished(run_id) == "success"
    project = world.mirror_project()
    pipeline = project.pipelines.get(world.run(run_id).gitlab_pipeline_id)
    assert {v.key: v.value for v in pipeline.variables.list()}["DEBUG_LEVEL"] == "3"


def test_gitlab_token_never_reaches_logs_or_run_records(world, capfd):
    sha = world.commit("true")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    world.wait_finished(run_id)
    out, err = capfd.readouterr()
    assert world.gl.token not in out + err
    with world.svc.db.session() as session:
        records = [(r.error or "") + (r.gitlab_pipeline_url or "") for r in session.scalars(select(Run))]
    assert all(world.gl.token not in r for r in records)
    cache = world.bench.mirror.cache(world.repo_id)
    assert world.gl.token not in (cache / "config").read_text()


def test_gitlab_answering_30_percent_5xx_still_finishes(world):
    world.gl.state.fault_5xx_rate = 0.3
    world.gl.state.rng.seed(20261125)
    sha = world.commit("echo resilient")
    run_id = world.trigger(sha)
    assert world.wait_finished(run_id) == "success"  # each failed step is tried again, as workers do
    assert world.gl.state.faults > 3
    world.gl.state.fault_5xx_rate = 0.0
    assert len(world.mirror_project().pipelines.list(sha=sha)) == 1


def test_github_down_for_ten_seconds_still_gets_the_final_status(world):
    sha = world.commit("echo fine")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)  # `pending` is posted while GitHub is up
    world.gh.state.down_until = time.time() + 10  # then GitHub answers 503 for ten seconds
    started = time.monotonic()
    assert world.wait_finished(run_id, timeout=90) == "success"
    assert time.monotonic() - started >= 5  # it really had to wait for GitHub
    assert world.statuses(sha)[-1]["state"] == "success"


def test_registration_changes_reach_the_mirror_projects_variables(world):
    sha = world.commit("true")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    answer = world.app.test_client().patch(
        f"/api/repositories/{world.repo_id}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        json={"firecrest_client_secret": "rotated-firecrest-secret-42", "default_account": "proj99"},
    )
    assert answer.status_code == 200
    assert runs.sync_projects(world.bench, world.repo_id) == 1
    variables = {v.key: v.value for v in world.mirror_project().variables.list()}
    assert variables["FIRECREST_CLIENT_SECRET"] == "rotated-firecrest-secret-42"
    assert variables["FIRECREST_ACCOUNT"] == "proj99"


def drive(world: World, run_id: int, until: float) -> None:
    """Advance a run the way the dispatcher would, whenever it is due, until the deadline."""
    from middleware.models import utcnow
    from middleware.runs.schedule import aware

    while time.monotonic() < until:
        due = aware(world.run(run_id).next_check_at)
        if due is None:
            return
        if due <= utcnow():
            runs.advance(world.bench, run_id)
        time.sleep(0.1)


def test_a_lost_answer_to_the_final_status_does_not_post_it_twice(world):
    sha = world.commit("echo once")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    world.gh.state.lose_status_answers = 1  # GitHub records the final status, its answer is lost
    world.wait_finished(run_id)
    finals = [s for s in world.statuses(sha) if s["state"] != "pending"]
    assert [s["state"] for s in finals] == ["success"]
    assert world.gh.state.lose_status_answers == 0  # the fault really happened
    assert world.run(run_id).attempts == 0 and "502" in (world.run(run_id).last_error or "")


def test_gitlab_502_after_creating_the_pipeline_adopts_it(world):
    sha = world.commit("echo adopted")
    run_id = world.trigger(sha)
    world.gl.state.fail_after_create = 1
    assert runs.advance(world.bench, run_id) == "mirrored"  # the create "failed": tried again later
    assert world.gl.state.fail_after_create == 0
    assert "502" in (world.run(run_id).last_error or "")
    assert world.wait_finished(run_id) == "success"
    (pipeline,) = world.mirror_project().pipelines.list(sha=sha)
    assert world.run(run_id).gitlab_pipeline_id == pipeline.id
    assert [s["state"] for s in world.statuses(sha)] == ["pending", "success"]


def test_a_run_that_cannot_start_in_its_window_ends_error_with_the_reason(world):
    world.bench.settings = world.bench.settings.model_copy(update={"start_window": 1, "retry_backoff_max": 1})
    sha = world.commit("true")
    run_id = world.trigger(sha)
    world.gl.state.fault_5xx_rate = 1.0  # GitLab answers nothing but 502
    drive(world, run_id, time.monotonic() + 30)
    world.gl.state.fault_5xx_rate = 0.0
    run = world.run(run_id)
    assert run.state == "error" and run.next_check_at is None
    assert run.error.startswith("could not start within 0 min") and "502" in run.error
    (status,) = world.statuses(sha)
    assert status["state"] == "error" and status["description"].startswith("could not start")


def test_a_final_status_not_posted_in_the_report_window_marks_the_run_unreported(world):
    world.bench.settings = world.bench.settings.model_copy(
        update={"report_window": 2, "retry_backoff_max": 1}
    )
    sha = world.commit("echo fine")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    world.gh.state.down_until = time.time() + 3600  # GitHub gone for good
    drive(world, run_id, time.monotonic() + 60)
    run = world.run(run_id)
    assert (run.state, run.unreported, run.next_check_at) == ("success", True, None)
    assert [s["state"] for s in world.statuses(sha)] == ["pending"]
    http = world.app.test_client()
    listed = http.get(f"/api/repositories/{world.repo_id}/runs", headers={"Authorization": f"Bearer {ADMIN}"})
    (shown,) = listed.get_json()["runs"]
    assert shown["status"] == {
        "state": "success",
        "description": "pipeline passed on cluster",
        "reported": False,
        "unreported": True,
    }
    assert "firecrest_ci_runs_unreported 1.0" in http.get("/metrics").get_data(as_text=True)


def test_each_mirror_project_gets_its_own_hook_token(world):
    sha = world.commit("true")
    runs.start(world.bench, world.trigger(sha))
    project = world.gl.state.project_by_path(f"firecrest-ci/{world.repo_id}/cpu")
    (hook,) = project["hooks"]
    assert hook["url"].endswith("/webhooks/managed-gitlab/pipeline") and hook["pipeline_events"]
    token, new = runs.hook_token(world.bench, world.repo_id, "cpu")
    assert (hook["token"], new) == (token, False) and len(token) >= 32
    assert token != world.bench.settings.gitlab_webhook_token


def test_deleting_a_registration_purges_its_mirror_projects_variables_and_cache(world):
    sha = world.commit("sleep 20")
    run_id = world.trigger(sha)
    runs.start(world.bench, run_id)
    cache = world.bench.mirror.cache(world.repo_id)
    assert cache.exists() and world.gl.state.project_by_path(f"firecrest-ci/{world.repo_id}/cpu")
    http = world.app.test_client()
    assert (
        http.delete(
            f"/api/repositories/{world.repo_id}", headers={"Authorization": f"Bearer {ADMIN}"}
        ).status_code
        == 204
    )
    with world.svc.db.session() as session:
        (purge,) = session.scalars(
            select(OutboxItem).where(OutboxItem.task == "firecrest_ci.purge_repository")
        )
        payload = purge.payload
    assert runs.purge(world.bench, payload["repository_id"], payload["pipelines"]) == 1
    assert world.gl.state.project_by_path(f"firecrest-ci/{world.repo_id}/cpu") is None  # variables too
    assert world.gl.state.group_by_path(f"firecrest-ci/{world.repo_id}") is None
    assert not cache.exists()
    assert runs.purge(world.bench, payload["repository_id"], payload["pipelines"]) == 0  # idempotent
