"""Issue 12's loop in App mode, end to end: the App registered in the GitHub stand-in and
installed on the repository (its `installation` webhook reaches the service, served on a port),
the repository registered without a notification token, a push signed with the App's secret
delivered by the stand-in's hookshot -> a check run queued -> in_progress -> completed with the
jobs table and a link to the run's page -> "Re-run" by a trusted user -> a second attempt, a
second GitLab pipeline for the same commit and a second completed check run. An untrusted
re-run and a redelivered re-run make nothing. A failing commit's check run shows the failed
job's log tail with the secret CI variable masked.

The pipelines really run in the GitLab stand-in; the workers' steps are driven in-process
(`steps.advance`, as the run viewer's tests do), on PostgreSQL.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

import sandbox.github.checks as standin_checks
from middleware.app import create_app
from middleware.models import Run
from middleware.runs import steps
from middleware.services import EXTENSION, Services
from sandbox.firecrest.server import QuietHandler
from sandbox.github.records import CheckRun, Delivery
from sandbox.github.server import GitHubHandle, run_github
from sandbox.gitlab.server import run_gitlab
from tests.gitops import git
from tests.middleware.app_mode_support import APP_SECRET, private_key
from tests.middleware.conftest import ADMIN, load_payload, make_settings, postgres_database

APP_ID = 5151
REPO = "octo-org/hpc-code"
CLIENT_SECRET = "firecrest-client-secret-e2e-7a6b"
CI_SECRET = "planted-ci-secret-value-31337"
FINAL = ("success", "failed", "canceled", "error")
ENTRYPOINT = """stages: [test]
unit:
  stage: test
  script:
    - echo "the token is $TOKEN"
    - bash ci/job.sh
"""


class Deferred:
    """A WSGI app set after the server is bound: the service's public URL is the server's."""

    app: Callable[..., Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class AppLoop:
    url: str
    gh: GitHubHandle
    gl: Any
    svc: Services
    bench: steps.Workbench
    repo_id: int
    work: Path
    source: Any
    #: (run id, status, conclusion) of every write to a check run, in order.
    writes: list[tuple[str | None, str, str | None]]

    def commit(self, script: str) -> str:
        (self.work / "ci").mkdir(exist_ok=True)
        (self.work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
        (self.work / "ci" / "job.sh").write_text(f"#!/bin/bash\n{script}\n")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "--allow-empty", "-m", script[:40])
        url = self.source.http_url_to_repo.replace("http://", f"http://oauth2:{self.gl.token}@")
        git(self.work, "push", "-q", "--force", url, "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")

    def push(self, sha: str) -> Delivery:
        """GitHub sends the push of `main` to the App: hookshot signs it with the App's secret."""
        found = self.gh.state.find_repo(REPO)
        assert found is not None
        payload = load_payload("push")
        payload["repository"].update(full_name=REPO, name="hpc-code", id=found["id"])
        payload["repository"]["owner"]["login"] = "octo-org"
        payload.update(ref="refs/heads/main", after=sha, deleted=False)
        payload.pop("installation", None)
        delivery = self.gh.state.deliver("push", payload, app_id=APP_ID)
        assert delivery is not None
        return delivery

    def runs(self, sha: str) -> list[Run]:
        with self.svc.db.session() as session:
            return list(session.scalars(select(Run).where(Run.sha == sha).order_by(Run.id)))

    def finish(self, run_id: int, timeout: float = 40) -> str:
        """Drive the run as the workers do until it is final and its check run says so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = steps.advance(self.bench, run_id)
            with self.svc.db.session() as session:
                run = session.get(Run, run_id)
                assert run is not None
                if state in FINAL and run.posted_seq == run.status_seq:
                    return state
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish")

    def check_runs(self, sha: str) -> list[CheckRun]:
        return self.gh.state.check_runs_for(REPO, sha)

    def pipelines(self, sha: str) -> list[Any]:
        client = gitlab.Gitlab(self.gl.url, private_token=self.gl.token)
        project = client.projects.get(f"firecrest-ci/{self.repo_id}/cpu")
        return list(project.pipelines.list(sha=sha))

    def phases(self, run_id: int) -> list[tuple[str, str | None]]:
        """The check run's successive (status, conclusion), repeats folded."""
        seen: list[tuple[str, str | None]] = []
        for external, status, conclusion in self.writes:
            if external == str(run_id) and (not seen or seen[-1] != (status, conclusion)):
                seen.append((status, conclusion))
        return seen


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppLoop]:
    tmp = tmp_path_factory.mktemp("app-loop")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    writes: list[tuple[str | None, str, str | None]] = []
    original_apply = standin_checks.apply

    def recording_apply(run: CheckRun, body: dict[str, Any]) -> None:
        original_apply(run, body)
        writes.append((run.external_id, run.status, run.conclusion))

    deferred = Deferred()
    server = make_server("127.0.0.1", 0, deferred, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="app-mode-service", daemon=True)
    url = f"http://127.0.0.1:{server.server_port}"
    with (
        pytest.MonkeyPatch.context() as patch,
        run_gitlab(tmp / "gitlab") as gl,
        run_github() as gh,
        postgres_database() as database_url,
    ):
        patch.setattr(standin_checks, "apply", recording_apply)
        gh.state.add_org("octo-org")
        gh.state.add_repo(REPO)
        gh.state.add_user("trusty")
        gh.state.add_user("mallory")
        client = gitlab.Gitlab(gl.url, private_token=gl.token)
        group = client.groups.create({"name": "sources", "path": "sources"})
        source = client.projects.create(
            {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
        )
        settings = make_settings(
            tmp,
            database_url=database_url,
            github_api_url=gh.url,
            github_app_id=str(APP_ID),
            github_app_private_key=private_key(),
            github_app_webhook_secret=APP_SECRET,
            github_url=gh.url,
            public_url=url,
            insecure_sandbox=True,
            gitlab_url=gl.url,
            gitlab_token=gl.token,
            gitlab_group="firecrest-ci",
            github_write_interval=0,
        )
        app = create_app(settings)  # the real GitHub look-ups, against the stand-in
        svc: Services = app.extensions[EXTENSION]
        deferred.app = app
        thread.start()
        try:
            gh.state.register_app(
                "firecrest-ci",
                private_key(),
                app_id=APP_ID,
                owner="octo-org",
                webhook_url=f"{url}/webhooks/github",
                webhook_secret=APP_SECRET,
                events=["push", "pull_request", "issue_comment", "check_run", "check_suite"],
            )
            gh.state.install_app(APP_ID, "octo-org", [REPO])
            (installed,) = gh.state.deliveries_for(APP_ID, "installation")
            assert installed.status_code == 200, installed.response_body

            admin = {"Authorization": f"Bearer {ADMIN}"}
            answer = httpx.post(
                f"{url}/api/repositories",
                headers=admin,
                json={  # no notification token: the App reports
                    "full_name": REPO,
                    "clone_url": source.http_url_to_repo,
                    "firecrest_client_id": "client-id",
                    "firecrest_client_secret": CLIENT_SECRET,
                    "trusted_users": ["trusty"],
                    "branches": ["main"],
                },
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            repo_id = int(answer.json()["id"])
            made = httpx.post(
                f"{url}/api/repositories/{repo_id}/pipelines",
                headers=admin,
                json={
                    "name": "cpu",
                    "entrypoint": "ci/cpu.yml",
                    "system": "cluster",
                    "variables": {"TOKEN": CI_SECRET},
                },
                timeout=30,
            )
            assert made.status_code == 201, made.text
            work = tmp / "work"
            work.mkdir()
            git(work, "init", "-q", "-b", "main")
            bench = steps.Workbench.build(svc.settings, svc.db, svc.box, github_app=svc.github_app)
            yield AppLoop(url, gh, gl, svc, bench, repo_id, work, source, writes)
        finally:
            server.shutdown()
            thread.join(timeout=5)
            server.server_close()
            svc.db.dispose()


def test_push_check_run_rerun_and_a_second_pipeline(loop):
    sha = loop.commit('echo "tested on $SLURM_CLUSTER_NAME"')
    pushed = loop.push(sha)
    assert pushed.status_code == 202, pushed.response_body
    (first,) = loop.runs(sha)
    assert loop.finish(first.id) == "success"

    (check,) = loop.check_runs(sha)
    assert (check.status, check.conclusion, check.external_id) == ("completed", "success", str(first.id))
    assert check.name == "firecrest-ci/cpu"
    assert check.details_url == f"{loop.url}/runs/{first.id}"  # the run's page
    assert loop.phases(first.id) == [("queued", None), ("in_progress", None), ("completed", "success")]
    summary = check.output["summary"] or ""
    assert "| unit |" in summary or "[unit](" in summary, summary  # the jobs table
    assert "success" in summary
    assert httpx.get(check.details_url, timeout=10).status_code != 404

    # Someone not trusted presses "Re-run": nothing happens.
    refused = loop.gh.state.rerequest_check_run(check.id, sender="mallory")
    assert refused is not None and refused.status_code in (200, 202), refused.response_body
    assert "not trusted" in refused.response_body
    assert len(loop.runs(sha)) == 1

    # A trusted user does: the next attempt, a new pipeline for the same commit.
    rerun = loop.gh.state.rerequest_check_run(check.id, sender="trusty")
    assert rerun is not None and rerun.status_code == 202, rerun.response_body
    assert "attempt 2" in rerun.response_body
    runs = loop.runs(sha)
    assert [(r.attempt, r.requested_by) for r in runs] == [(1, None), (2, "trusty")]
    second = runs[1]
    assert loop.finish(second.id) == "success"

    # GitHub redelivers the same "Re-run": a duplicate, nothing more.
    again = loop.gh.state.redeliver(rerun.id)
    assert again.guid == rerun.guid and again.status_code == 200, again.response_body
    assert "duplicate" in again.response_body
    assert len(loop.runs(sha)) == 2

    assert len(loop.pipelines(sha)) == 2
    assert first.gitlab_pipeline_id != loop.runs(sha)[1].gitlab_pipeline_id
    checks = loop.check_runs(sha)
    assert [(c.external_id, c.status, c.conclusion) for c in checks] == [
        (str(first.id), "completed", "success"),
        (str(second.id), "completed", "success"),
    ]
    assert checks[1].details_url == f"{loop.url}/runs/{second.id}"
    assert loop.phases(second.id)[-1] == ("completed", "success")


def test_a_failing_commit_shows_the_log_tail_with_the_secret_masked(loop):
    marker = f"boom-{uuid.uuid4().hex[:8]}"
    sha = loop.commit(f'echo "{marker}: leaked $TOKEN"; exit 3')
    assert loop.push(sha).status_code == 202
    (run,) = loop.runs(sha)
    assert loop.finish(run.id) == "failed"
    (check,) = loop.check_runs(sha)
    assert (check.status, check.conclusion) == ("completed", "failure")
    output = check.output
    everything = "".join(str(output.get(k) or "") for k in ("title", "summary", "text"))
    assert marker in (output["text"] or ""), output  # the failed job's log tail
    assert CI_SECRET not in everything and CLIENT_SECRET not in everything
    assert "[MASKED]" in (output["text"] or "")
    assert "failed" in (output["summary"] or "")


def test_the_app_asks_for_a_fresh_approval_with_its_own_token(loop):
    """No person's token in App mode: the approval request on the PR is the App's comment."""
    loop.gh.state.add_repo(REPO)  # idempotent; the PR the comment goes to
    steps.ask_for_approval(
        loop.bench,
        {"repository_id": loop.repo_id, "pr_number": 7, "sha": "b" * 40, "commenter": "trusty"},
    )
    (comment,) = [c for c in loop.gh.state.comments if c.get("issue_number") == 7]
    assert "started nothing" in comment["body"]
    assert comment["user"]["login"].endswith("[bot]"), comment["user"]
