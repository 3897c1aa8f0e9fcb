import subprocess

import gitlab
import pytest
import yaml

from middleware.managed_gitlab.templates_project import publish, render
from sandbox.gitlab.server import run_gitlab


def test_the_image_setting_becomes_the_components_default():
    spec, job = yaml.safe_load_all(render("registry.example.org/ci-runner:2.0"))
    assert spec["spec"]["inputs"]["image"]["default"] == "registry.example.org/ci-runner:2.0"
    assert job["$[[ inputs.job_name ]]"]["image"]["name"] == "$[[ inputs.image ]]"


def test_publishing_creates_then_updates_the_templates_project(tmp_path):
    with run_gitlab(tmp_path / "gitlab") as gl:
        client = gitlab.Gitlab(gl.url, private_token=gl.token)
        first = publish(client, "firecrest-ci", gl.token, "img:1")
        second = publish(client, "firecrest-ci", gl.token, "img:2")
        assert first != second
        project = gl.state.project_by_path("firecrest-ci/templates")
        assert project is not None and project["visibility"] == "public"
        shown = subprocess.run(
            ["git", "-C", str(gl.state.repo_dir(project)), "show", "main:templates/firecrest-job.yml"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert '"img:2"' in shown
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
            publish(gitlab.Gitlab(gl.url, private_token="nope"), "firecrest-ci", "nope", "img:3")
