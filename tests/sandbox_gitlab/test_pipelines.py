"""Pipelines in the GitLab stand-in: the project's own component, included from a
templates project, runs `ci-runner` against the FirecREST sandbox for real."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import gitlab
import pytest

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.gitlab.server import run_gitlab
from tests.gitops import ENTRYPOINT, git

ROOT = Path(__file__).resolve().parents[2]


def push_files(path: Path, url: str, token: str, files: dict[str, str], branch: str = "main") -> str:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", branch)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-qm", "update")
    git(path, "push", "-q", "--force", url.replace("http://", f"http://oauth2:{token}@"), f"HEAD:{branch}")
    return git(path, "rev-parse", "HEAD")


def wait_pipeline(project, pipeline_id: int, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipeline = project.pipelines.get(pipeline_id)
        if pipeline.status in ("success", "failed", "canceled"):
            return pipeline
        time.sleep(0.2)
    raise AssertionError(f"pipeline {pipeline_id} still {pipeline.status}")


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with (
        run_sandbox(SandboxConfig(root=tmp_path / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp_path / "gitlab") as gitlab_handle,
    ):
        client = gitlab.Gitlab(gitlab_handle.url, private_token=gitlab_handle.token)
        group = client.groups.create({"name": "firecrest-ci", "path": "firecrest-ci"})
        templates = client.projects.create(
            {"name": "templates", "path": "templates", "namespace_id": group.id, "visibility": "public"}
        )
        component = (ROOT / "workflows" / "gitlab" / "templates" / "firecrest-job.yml").read_text()
        push_files(
            tmp_path / "templates",
            templates.http_url_to_repo,
            gitlab_handle.token,
            {"templates/firecrest-job.yml": component},
        )
        mirror = client.projects.create(
            {
                "name": "cpu",
                "path": "cpu",
                "namespace_id": group.id,
                "ci_config_path": "ci/cpu.yml",
                "visibility": "public",
            }
        )
        mirror.ci_pipeline_variables_minimum_override_role = "developer"
        mirror.save()
        for key, value in {**firecrest.env(), "FIRECREST_SYSTEM": "cluster"}.items():
            mirror.variables.create(
                {"key": key, "value": value, "masked": len(value) >= 8, "protected": True}
            )
        yield firecrest, gitlab_handle, client, mirror, tmp_path


def test_component_pipeline_runs_the_job_on_firecrest(world):
    firecrest, handle, _client, mirror, tmp = world
    sha = push_files(
        tmp / "src",
        mirror.http_url_to_repo,
        handle.token,
        {"ci/cpu.yml": ENTRYPOINT, "ci/hpc-job.sh": '#!/bin/bash\necho "hpc says $GREETING"\n'},
    )
    pipeline = mirror.pipelines.create(
        {
            "ref": "main",
            "variables": [
                {"key": "FIRECREST_CI_SOURCE_URL", "value": mirror.http_url_to_repo},
                {"key": "FIRECREST_CI_SOURCE_SHA", "value": sha},
            ],
        }
    )
    assert pipeline.sha == sha
    done = wait_pipeline(mirror, pipeline.id)
    jobs = done.jobs.list()
    trace = mirror.jobs.get(jobs[0].id, lazy=True).trace().decode()
    assert done.status == "success", trace
    assert "ci-runner run" in trace
    assert "COMPLETED with exit code 0" in trace
    assert firecrest.client_secret not in trace


def test_failing_hpc_job_fails_the_pipeline_and_cancel_stops_it(world):
    _firecrest, handle, _client, mirror, tmp = world
    push_files(
        tmp / "src",
        mirror.http_url_to_repo,
        handle.token,
        {"ci/cpu.yml": ENTRYPOINT, "ci/hpc-job.sh": "#!/bin/bash\nexit 3\n"},
    )
    failed = wait_pipeline(mirror, mirror.pipelines.create({"ref": "main"}).id)
    assert failed.status == "failed"
    push_files(
        tmp / "src", mirror.http_url_to_repo, handle.token, {"ci/hpc-job.sh": "#!/bin/bash\nsleep 60\n"}
    )
    running = mirror.pipelines.create({"ref": "main"})
    time.sleep(1.5)
    running.cancel()
    stopped = wait_pipeline(mirror, running.id, timeout=20)
    trace = mirror.jobs.get(stopped.jobs.list()[0].id, lazy=True).trace().decode()
    assert stopped.status == "canceled", trace


def test_bad_entrypoints_are_refused_with_gitlabs_messages(world):
    _firecrest, handle, _client, mirror, tmp = world
    push_files(tmp / "src", mirror.http_url_to_repo, handle.token, {"ci/cpu.yml": "stages: [test]\n"})
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as empty:
        mirror.pipelines.create({"ref": "main"})
    assert "at least one visible job" in str(empty.value)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as missing_ref:
        mirror.pipelines.create({"ref": "nope"})
    assert "Reference not found" in str(missing_ref.value)
    push_files(tmp / "src", mirror.http_url_to_repo, handle.token, {"ci/cpu.yml": "job: [unclosed\n"})
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as broken:
        mirror.pipelines.create({"ref": "main"})
    assert "Invalid configuration format" in str(broken.value)
