"""The whole loop as deployed: a signed GitHub webhook to gunicorn, the outbox to a Celery
worker on real Redis, the mirror and pipeline in the GitLab stand-in, the job on the
FirecREST sandbox, the status back to the GitHub stand-in; pipeline hooks close it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import httpx
import pytest

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab
from tests.conftest import service_url
from tests.gitops import ENTRYPOINT, git
from tests.middleware.conftest import load_payload, postgres_database, retarget
from tests.middleware.test_service_e2e import GH_TOKEN, Service, start_service

HOOK_TOKEN = "gitlab-hook-token-0123456789"


class Loop:
    def __init__(self, service: Service, gl: Any, firecrest: Any, tmp: Path) -> None:
        self.service, self.gl, self.firecrest, self.tmp = service, gl, firecrest, tmp
        self.client = gitlab.Gitlab(gl.url, private_token=gl.token)
        group = self.client.groups.create({"name": "sources", "path": "sources"})
        self.source = self.client.projects.create(
            {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
        )
        self.work = tmp / "work"
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        answer = service.api(
            "POST",
            "/api/repositories",
            json={
                "full_name": "octo-org/hpc-code",
                "clone_url": self.source.http_url_to_repo,
                "notification_token": GH_TOKEN,
                "firecrest_client_id": firecrest.client_id,
                "firecrest_client_secret": firecrest.client_secret,
                "branches": ["main", "release/*"],
                "trusted_users": ["octocat"],
            },
        )
        assert answer.status_code == 201, answer.text
        self.repo = answer.json()
        made = service.api(
            "POST",
            f"/api/repositories/{self.repo['id']}/pipelines",
            json={"name": "cpu", "entrypoint": "ci/cpu.yml", "system": "cluster"},
        )
        assert made.status_code == 201, made.text

    def commit(self, script: str, ref: str = "main") -> str:
        (self.work / "ci").mkdir(exist_ok=True)
        (self.work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
        (self.work / "ci" / "hpc-job.sh").write_text(f"#!/bin/bash\n{script}\n")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "--allow-empty", "-m", script[:40])
        url = self.source.http_url_to_repo.replace("http://", f"http://oauth2:{self.gl.token}@")
        git(self.work, "push", "-q", "--force", url, f"HEAD:{ref}")
        return git(self.work, "rev-parse", "HEAD")

    def pull_request(
        self, number: int, sha: str, author: str, head_repo: str, action: str = "opened"
    ) -> httpx.Response:
        payload = retarget(load_payload("pull_request", "opened.payload.json"))
        payload["action"] = action
        pr = payload["pull_request"]
        pr.update(number=number)
        pr["user"].update(login=author, id=self.service.github.state.add_user(author))
        pr["head"].update(sha=sha, ref="feature")
        pr["head"]["repo"]["full_name"] = head_repo
        pr["base"]["ref"] = "main"
        return self.service.deliver("pull_request", payload, self.repo["webhook_secret"])

    def comment(
        self, number: int, body: str, author: str = "octocat", made: float | None = None
    ) -> httpx.Response:
        payload = retarget(load_payload("issue_comment", "created.payload.json"))
        payload["issue"]["number"] = number
        payload["issue"]["pull_request"] = {
            "url": f"https://api.github.com/repos/octo-org/hpc-code/pulls/{number}"
        }
        payload["comment"]["user"].update(login=author, id=self.service.github.state.add_user(author))
        moment = dt.datetime.fromtimestamp(made if made is not None else time.time(), dt.UTC)
        payload["comment"]["created_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        payload["comment"]["body"] = body
        return self.service.deliver("issue_comment", payload, self.repo["webhook_secret"])

    def branches(self) -> list[str]:
        project = self.client.projects.get(f"firecrest-ci/{self.repo['id']}/cpu")
        return [b.name for b in project.branches.list()]

    def push_webhook(self, sha: str, delivery: str | None = None) -> httpx.Response:
        payload = retarget(load_payload("push"))
        payload.update(ref="refs/heads/main", after=sha, deleted=False)
        return self.service.deliver("push", payload, self.repo["webhook_secret"], delivery=delivery)

    def final_status(self, sha: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [
                s for s in self.service.github.state.statuses if s["sha"] == sha and s["state"] != "pending"
            ]
            if done:
                return done[-1]
            time.sleep(0.3)
        raise AssertionError(f"no final status for {sha}: {self.service.github.state.statuses}")

    def pipelines(self, sha: str) -> list[Any]:
        project = self.client.projects.get(f"firecrest-ci/{self.repo['id']}/cpu")
        return project.pipelines.list(sha=sha)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    tmp = tmp_path_factory.mktemp("loop")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    redis_url = service_url("TEST_REDIS_URL").rsplit("/", 1)[0] + "/4"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    with (
        run_sandbox(SandboxConfig(root=tmp / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp / "gitlab") as gl,
        run_github() as gh,
        postgres_database() as database_url,
    ):
        gh.state.add_user("octo-bot", GH_TOKEN)
        gh.state.add_user("octocat")
        gh.state.add_repo("octo-org/hpc-code")
        extra = {
            "GITLAB_URL": gl.url,
            "GITLAB_TOKEN": gl.token,
            "GITLAB_GROUP": "firecrest-ci",
            "GITLAB_WEBHOOK_TOKEN": HOOK_TOKEN,
            "FIRECREST_URL": firecrest.url,
            "FIRECREST_TOKEN_URL": firecrest.token_url,
            "GITHUB_WRITE_INTERVAL": "0",
            "INSECURE_SANDBOX": "1",
            "BROKER_VISIBILITY_TIMEOUT": "6",
            "MIRROR_LOCK_TIMEOUT": "8",
            "DISPATCH_LEASE": "5",
            "RECONCILE_INTERVAL": "2",
            "RETRY_BACKOFF_MAX": "2",
        }
        service_iter = start_service(tmp, database_url, {"REDIS_URL": redis_url}, gh, extra)
        service = next(service_iter)
        try:
            yield Loop(service, gl, firecrest, tmp)
        finally:
            next(service_iter, None)


def test_push_webhook_ends_with_a_success_status_linking_the_pipeline(loop):
    sha = loop.commit('echo "tested on $SLURM_CLUSTER_NAME"')
    answer = loop.push_webhook(sha)
    assert answer.status_code == 202, answer.text
    status = loop.final_status(sha)
    assert (status["state"], status["context"]) == ("success", "firecrest-ci/cpu")
    (pipeline,) = loop.pipelines(sha)
    runs = loop.service.runs(loop.repo["id"])
    (run,) = [r for r in runs if r["sha"] == sha]
    assert status["target_url"].endswith(f"/runs/{run['id']}")  # the run's page
    assert [(r["sha"], r["state"], r["gitlab_pipeline_id"]) for r in runs if r["sha"] == sha] == [
        (sha, "success", pipeline.id)
    ]


def test_a_failing_commit_ends_with_failure_and_a_redelivery_adds_no_pipeline(loop):
    sha = loop.commit("exit 3")
    delivery = f"loop-{uuid.uuid4()}"
    assert loop.push_webhook(sha, delivery).status_code == 202
    assert loop.push_webhook(sha, delivery).status_code == 200  # redelivered: duplicate
    assert loop.final_status(sha)["state"] == "failure"
    assert len(loop.pipelines(sha)) == 1


def test_a_worker_killed_mid_mirror_leaves_exactly_one_pipeline(loop):
    loop.gl.state.push_delay = 4.0
    try:
        sha = loop.commit("echo after a crash")
        assert loop.push_webhook(sha).status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            r["sha"] == sha and r["state"] in ("queued", "mirrored")
            for r in loop.service.runs(loop.repo["id"])
        ):
            time.sleep(0.1)
        time.sleep(1.5)  # the worker is now inside the delayed push
        loop.service.worker.send_signal(signal.SIGKILL)
        loop.service.worker.wait()
        loop.gl.state.push_delay = 0.0
        loop.service.start_worker()  # the unacknowledged task comes back after the visibility timeout
        assert loop.final_status(sha, timeout=120)["state"] == "success"
        assert len(loop.pipelines(sha)) == 1
    finally:
        loop.gl.state.push_delay = 0.0


def test_same_repository_pull_request_runs_on_a_pr_branch(loop):
    sha = loop.commit("echo from a pr", ref="refs/pull/11/head")
    assert loop.pull_request(11, sha, "someone", "octo-org/hpc-code").status_code == 202
    assert loop.final_status(sha)["state"] == "success"
    assert "pr-11" in loop.branches()


def test_fork_pull_requests_run_only_for_trusted_authors(loop):
    untrusted = loop.commit("echo untrusted", ref="refs/pull/12/head")
    answer = loop.pull_request(12, untrusted, "mallory", "mallory/hpc-code")
    assert answer.status_code == 202
    assert "not trusted" in answer.text
    trusted = loop.commit("echo trusted", ref="refs/pull/13/head")
    assert loop.pull_request(13, trusted, "OctoCat", "octocat/hpc-code").status_code == 202
    assert loop.final_status(trusted)["state"] == "success"
    assert loop.pipelines(untrusted) == []


def test_trusted_comment_runs_the_pinned_head_with_variables(loop):
    head = loop.commit("echo approved", ref="refs/pull/14/head")
    loop.service.github.state.add_pull(
        "octo-org/hpc-code", 14, head_sha=head, base_ref="main", author="mallory"
    )
    seen = loop.pull_request(14, head, "mallory", "mallory/hpc-code")  # the head, as this service saw it
    assert "not trusted" in seen.text
    time.sleep(1.1)  # comment times have whole seconds
    answer = loop.comment(14, "firecrest-ci run cpu;LEVEL=3")
    assert answer.status_code == 202, answer.text
    assert loop.final_status(head)["state"] == "success"
    (pipeline,) = loop.pipelines(head)
    assert {v.key: v.value for v in pipeline.variables.list()}["LEVEL"] == "3"


def test_a_comment_approves_only_the_head_it_saw(loop):
    """The comment's first delivery failed, the fork pushed new code, the delivery came again."""
    github = loop.service.github.state
    reviewed = loop.commit("echo reviewed", ref="refs/pull/15/head")
    github.add_pull("octo-org/hpc-code", 15, head_sha=reviewed, base_ref="main", author="mallory")
    loop.pull_request(15, reviewed, "mallory", "mallory/hpc-code")
    time.sleep(1.1)
    approved_at = time.time()  # the trusted user approves what they reviewed ...
    time.sleep(1.1)
    sneaked = loop.commit("echo sneaked in", ref="refs/pull/15/head")  # ... then the fork pushes
    github.add_pull("octo-org/hpc-code", 15, head_sha=sneaked, base_ref="main", author="mallory")
    loop.pull_request(15, sneaked, "mallory", "mallory/hpc-code", action="synchronize")
    answer = loop.comment(15, "firecrest-ci run cpu", made=approved_at)  # the redelivered approval
    assert answer.status_code == 202
    assert "nothing to run" in answer.text and "comment again" in answer.text
    deadline = time.monotonic() + 30
    while not [c for c in github.comments if c["issue_number"] == 15] and time.monotonic() < deadline:
        time.sleep(0.2)
    (asked,) = [c for c in github.comments if c["issue_number"] == 15]
    assert (
        "@octocat" in asked["body"]
        and sneaked[:12] in asked["body"]
        and "comment `firecrest-ci run` again" in asked["body"]
    )
    assert loop.pipelines(sneaked) == []
    time.sleep(1.1)
    assert loop.comment(15, "firecrest-ci run cpu").status_code == 202  # a fresh approval runs it
    assert loop.final_status(sneaked)["state"] == "success"


def test_deleting_a_source_branch_deletes_its_mirror_branch(loop):
    sha = loop.commit("echo release", ref="release/1")
    payload = retarget(load_payload("push"))
    payload.update(ref="refs/heads/release/1", after=sha, deleted=False)
    assert loop.service.deliver("push", payload, loop.repo["webhook_secret"]).status_code == 202
    assert loop.final_status(sha)["state"] == "success"
    assert "release/1" in loop.branches()
    payload.update(after="0" * 40, before=sha, deleted=True)
    answer = loop.service.deliver("push", payload, loop.repo["webhook_secret"])
    assert answer.status_code == 202
    assert "cleanup release/1" in answer.text
    deadline = time.monotonic() + 30
    while "release/1" in loop.branches() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "release/1" not in loop.branches()


def test_no_token_or_secret_in_any_log(loop):
    text = "".join(p.read_text() for p in loop.service.logs.iterdir())
    for secret in (loop.gl.token, GH_TOKEN, loop.firecrest.client_secret, HOOK_TOKEN):
        assert secret not in text
