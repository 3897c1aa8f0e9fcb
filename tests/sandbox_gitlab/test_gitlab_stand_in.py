"""The GitLab stand-in driven by the unmodified python-gitlab client and the real git binary."""

from __future__ import annotations

import subprocess

import gitlab
import pytest

from sandbox.gitlab.server import run_gitlab


@pytest.fixture
def gl(tmp_path):
    with run_gitlab(tmp_path / "gitlab") as handle:
        yield handle, gitlab.Gitlab(handle.url, private_token=handle.token)


def test_bad_token_is_401(gl):
    handle, _ = gl
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        gitlab.Gitlab(handle.url, private_token="nope").groups.get("x")


def test_groups_projects_and_settings(gl):
    _, client = gl
    group = client.groups.create({"name": "firecrest-ci", "path": "firecrest-ci"})
    sub = client.groups.create({"name": "7", "path": "7", "parent_id": group.id})
    assert client.groups.get("firecrest-ci/7").id == sub.id
    with pytest.raises(gitlab.exceptions.GitlabGetError):
        client.projects.get("firecrest-ci/7/cpu")
    project = client.projects.create(
        {
            "name": "cpu",
            "path": "cpu",
            "namespace_id": sub.id,
            "ci_config_path": "ci/cpu.yml",
            "visibility": "public",
        }
    )
    assert project.path_with_namespace == "firecrest-ci/7/cpu"
    assert project.ci_pipeline_variables_minimum_override_role == "no_one_allowed"  # GitLab.com's new default
    project.ci_pipeline_variables_minimum_override_role = "developer"
    project.save()
    again = client.projects.get("firecrest-ci/7/cpu")
    assert again.ci_pipeline_variables_minimum_override_role == "developer"
    assert again.ci_config_path == "ci/cpu.yml"
    with pytest.raises(gitlab.exceptions.GitlabCreateError):
        client.projects.create({"name": "cpu", "path": "cpu", "namespace_id": sub.id})


def test_masked_variables_and_protected_branches(gl):
    _, client = gl
    group = client.groups.create({"name": "g", "path": "g"})
    project = client.projects.create({"name": "p", "path": "p", "namespace_id": group.id})
    project.variables.create({"key": "FIRECREST_CLIENT_SECRET", "value": "s3cret-value", "masked": True})
    with pytest.raises(gitlab.exceptions.GitlabCreateError):
        project.variables.create({"key": "SHORT", "value": "abc", "masked": True})  # masked needs 8+ chars
    variable = project.variables.get("FIRECREST_CLIENT_SECRET")
    assert variable.masked is True and variable.protected is False
    variable.value = "n3w-s3cret-value"
    variable.save()
    assert project.variables.get("FIRECREST_CLIENT_SECRET").value == "n3w-s3cret-value"
    project.protectedbranches.create({"name": "*", "allow_force_push": True})
    assert [b.name for b in project.protectedbranches.list()] == ["*"]


def test_git_push_needs_the_token_and_private_reads_too(gl, tmp_path):
    handle, client = gl
    group = client.groups.create({"name": "g", "path": "g"})
    project = client.projects.create({"name": "p", "path": "p", "namespace_id": group.id})
    work = tmp_path / "w"
    work.mkdir()
    run = lambda *a: subprocess.run(  # noqa: E731
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=work, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)},
    )  # fmt: skip
    run("init", "-q", "-b", "main")
    (work / "f").write_text("x")
    run("add", ".")
    run("commit", "-qm", "x")
    assert run("push", project.http_url_to_repo, "main").returncode != 0
    assert run("ls-remote", project.http_url_to_repo).returncode != 0
    authed = project.http_url_to_repo.replace("http://", f"http://oauth2:{handle.token}@")
    assert run("push", "-q", authed, "main").returncode == 0
    assert [b.name for b in project.branches.list()] == ["main"]
