"""The GitLab component's `junit` input, run for real: a pipeline in the GitLab stand-in includes
the component, whose job runs `ci-runner` against the FirecREST sandbox; the report comes back
under firecrest-artifacts/junit/, where the component's artifacts:reports:junit points."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import gitlab
import yaml

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.gitlab.server import run_gitlab
from tests.gitops import git

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "workflows" / "gitlab" / "templates" / "firecrest-job.yml"

ENTRYPOINT = """stages: [test]
include:
  - component: $CI_SERVER_FQDN/firecrest-ci/templates/firecrest-job@main
    inputs:
      script: ci/hpc-job.sh
      time: 2m
      junit: "nothing/*.xml reports/*.xml"
"""

HPC_JOB = """#!/bin/bash
mkdir -p reports
cat > reports/unit.xml <<EOF
<testsuite name="pytest">
<testcase classname="tests.test_math" name="test_add" file="$PWD/tests/test_math.py" line="2">
<failure message="assert 2 + 2 == 5">tests/test_math.py:4: AssertionError</failure></testcase>
<testcase classname="tests.test_math" name="test_sub"/>
</testsuite>
EOF
echo the HPC job passes
"""


def push(path: Path, url: str, token: str, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-qm", "update")
    git(path, "push", "-q", "--force", url.replace("http://", f"http://oauth2:{token}@"), "HEAD:main")
    return git(path, "rev-parse", "HEAD")


def test_the_component_declares_junit_and_keeps_the_reports_for_gitlab():
    spec, job = (d for d in yaml.safe_load_all(COMPONENT.read_text()) if d is not None)
    assert spec["spec"]["inputs"]["junit"]["default"] == ""
    (body,) = job.values()
    assert body["artifacts"]["when"] == "always"
    assert body["artifacts"]["reports"]["junit"] == "firecrest-artifacts/junit/**/*.xml"
    assert "firecrest-artifacts/" in body["artifacts"]["paths"]
    assert '--junit "$(printf' in body["script"][0]


def test_a_pipeline_brings_the_report_back_and_a_failing_test_alone_does_not_fail_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with (
        run_sandbox(SandboxConfig(root=tmp_path / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp_path / "gitlab") as handle,
    ):
        client = gitlab.Gitlab(handle.url, private_token=handle.token)
        group = client.groups.create({"name": "firecrest-ci", "path": "firecrest-ci"})
        templates = client.projects.create(
            {"name": "templates", "path": "templates", "namespace_id": group.id, "visibility": "public"}
        )
        push(
            tmp_path / "templates",
            templates.http_url_to_repo,
            handle.token,
            {"templates/firecrest-job.yml": COMPONENT.read_text()},
        )
        mirror = client.projects.create(
            {
                "name": "cpu",
                "path": "cpu",
                "namespace_id": group.id,
                "ci_config_path": "ci/cpu.yml",
                "visibility": "public",  # the HPC job clones it without credentials
            }
        )
        mirror.ci_pipeline_variables_minimum_override_role = "developer"  # to pass the source's URL and SHA
        mirror.save()
        for key, value in {**firecrest.env(), "FIRECREST_SYSTEM": "cluster"}.items():
            mirror.variables.create({"key": key, "value": value, "masked": len(value) >= 8})
        sha = push(
            tmp_path / "src",
            mirror.http_url_to_repo,
            handle.token,
            {"ci/cpu.yml": ENTRYPOINT, "ci/hpc-job.sh": HPC_JOB},
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
        deadline = time.monotonic() + 90
        while (pipeline := mirror.pipelines.get(pipeline.id)).status not in ("success", "failed", "canceled"):
            assert time.monotonic() < deadline, pipeline.status
            time.sleep(0.2)
        trace = mirror.jobs.get(pipeline.jobs.list()[0].id, lazy=True).trace().decode()
    assert pipeline.status == "success", trace
    assert re.search(
        r"copied 1 of 1 matching JUnit report\(s\) to /\S+/firecrest-artifacts/junit$", trace, re.M
    )
    assert "tests: 2 run, 1 passed, 1 failed, 0 errors, 0 skipped" in trace
    assert "FAILURE tests.test_math.test_add (tests/test_math.py:4): assert 2 + 2 == 5" in trace
    assert firecrest.client_secret not in trace
