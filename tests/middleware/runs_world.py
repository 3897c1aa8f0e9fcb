"""A registered repository whose runs really run in the GitLab stand-in, for the run viewer's and
the run actions' tests: steps driven in-process (no broker), statuses to the GitHub stand-in.

The entrypoint needs no FirecREST: its one job prints ANSI colours, HTML-special characters and
the FirecREST client secret and a pipeline secret (to be masked), then runs `ci/job.sh`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gitlab

from middleware.app import create_app
from middleware.models import Run
from middleware.runs import steps
from middleware.runs.actions import RunControl
from middleware.runs.schedule import record_run
from middleware.services import EXTENSION, Services
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab
from tests.gitops import git
from tests.middleware.conftest import ADMIN, make_settings

GH_TOKEN = "ghp_viewer_notification_token_0123"
CLIENT_SECRET = "firecrest-client-secret-9f8e7d6c"
PIPELINE_SECRET = "pipeline-secret-<&>-value-42"
ENTRYPOINT = r"""stages: [test]
colour:
  stage: test
  script:
    - printf '\033[1;32mbuilding\033[0m <b>bold?</b> & \033[31mred\033[0m\n'
    - echo "client secret $FIRECREST_CLIENT_SECRET and token $TOKEN"
    - bash ci/job.sh
"""
FINAL = ("success", "failed", "canceled", "error")


class RunsWorld:
    """The app, its services, the stand-ins and a repository `octo-org/hpc-code` with pipeline `cpu`."""

    def __init__(self, tmp: Path, gl: Any, gh: Any, **overrides: Any) -> None:
        self.tmp, self.gl, self.gh = tmp, gl, gh
        self.gitlab = gitlab.Gitlab(gl.url, private_token=gl.token)
        group = self.gitlab.groups.create({"name": "sources", "path": "sources"})
        self.source = self.gitlab.projects.create(
            {"name": "hpc-code", "path": "hpc-code", "namespace_id": group.id, "visibility": "public"}
        )
        self.work = tmp / "work"
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        self.trusted_id = gh.state.add_user("trusty")
        self.pipeline_trusted_id = gh.state.add_user("gpu-only")
        self.outsider_id = gh.state.add_user("mallory")
        values: dict[str, Any] = {
            "insecure_sandbox": True,
            "gitlab_url": gl.url,
            "gitlab_token": gl.token,
            "gitlab_group": "firecrest-ci",
            "github_api_url": gh.url,
            "github_url": gh.url,
            "github_write_interval": 0,
            "session_cookie_secure": False,
        }
        settings = make_settings(tmp, **{**values, **overrides})
        self.app = create_app(settings)
        self.svc: Services = self.app.extensions[EXTENSION]
        self.bench = steps.Workbench.build(self.svc.settings, self.svc.db, self.svc.box)
        self.control = RunControl.build(self.svc.settings, self.svc.db)
        api = self.app.test_client()
        answer = api.post(
            "/api/repositories",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={
                "full_name": "octo-org/hpc-code",
                "clone_url": self.source.http_url_to_repo,
                "notification_token": GH_TOKEN,
                "firecrest_client_id": "client-id",
                "firecrest_client_secret": CLIENT_SECRET,
                "trusted_users": ["trusty"],
                "branches": ["main"],
            },
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)
        self.repo_id: int = answer.get_json()["id"]
        for name, trusted in (("cpu", None), ("gpu", ["gpu-only"])):
            made = api.post(
                f"/api/repositories/{self.repo_id}/pipelines",
                headers={"Authorization": f"Bearer {ADMIN}"},
                json={
                    "name": name,
                    "entrypoint": "ci/cpu.yml",
                    "system": "cluster",
                    "variables": {"TOKEN": PIPELINE_SECRET},
                    **({"trusted_users": trusted} if trusted else {}),
                },
            )
            assert made.status_code == 201, made.get_data(as_text=True)

    def commit(self, script: str, ref: str = "main") -> str:
        (self.work / "ci").mkdir(exist_ok=True)
        (self.work / "ci" / "cpu.yml").write_text(ENTRYPOINT)
        (self.work / "ci" / "job.sh").write_text(f"#!/bin/bash\n{script}\n")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "--allow-empty", "-m", script[:40])
        sha = git(self.work, "rev-parse", "HEAD")
        url = self.source.http_url_to_repo.replace("http://", f"http://oauth2:{self.gl.token}@")
        git(self.work, "push", "-q", "--force", url, f"HEAD:{ref}")
        return sha

    def trigger(self, sha: str, pipeline: str = "cpu", **fields: Any) -> int:
        return record_run(
            self.svc.db,
            {
                "repository_id": self.repo_id,
                "pipeline": pipeline,
                "ref": "main",
                "sha": sha,
                "kind": "push",
                "reason": "test",
                **fields,
            },
        )

    def run(self, run_id: int) -> Run:
        with self.svc.db.session() as session:
            found = session.get(Run, run_id)
            assert found is not None
            session.expunge(found)
            return found

    def start(self, run_id: int) -> Run:
        """Mirror and create the pipeline; the run is then pending."""
        assert steps.start(self.bench, run_id) in ("pending", "running"), self.run(run_id).last_error
        return self.run(run_id)

    def wait_finished(self, run_id: int, timeout: float = 60) -> str:
        """Drive the run as the workers do until it is final and its final status is posted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = steps.advance(self.bench, run_id)
            run = self.run(run_id)
            if state in FINAL and run.posted_seq == run.status_seq:
                return state
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish: {self.run(run_id).last_error}")

    def pipeline_status(self, pipeline_id: int, wanted: str, timeout: float = 30) -> str:
        project = self.gitlab.projects.get(f"firecrest-ci/{self.repo_id}/cpu")
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = str(project.pipelines.get(pipeline_id).status)
            if status == wanted:
                break
            time.sleep(0.1)
        return status

    def pipelines(self, sha: str) -> list[Any]:
        try:
            project = self.gitlab.projects.get(f"firecrest-ci/{self.repo_id}/cpu")
        except gitlab.exceptions.GitlabGetError:
            return []  # never mirrored
        return list(project.pipelines.list(sha=sha))

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        return [s for s in self.gh.state.statuses if s["sha"] == sha]


@contextmanager
def runs_world(tmp: Path, **overrides: Any) -> Iterator[RunsWorld]:
    """`overrides` are settings (the browser tests' public URL and OAuth client)."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with run_gitlab(tmp / "gitlab") as gl, run_github() as gh:
        gh.state.add_user("octo-bot", GH_TOKEN)
        gh.state.add_repo("octo-org/hpc-code")
        world = RunsWorld(tmp, gl, gh, **overrides)
        try:
            yield world
        finally:
            world.svc.db.dispose()
