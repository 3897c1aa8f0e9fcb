"""Publish the FirecREST CI/CD component into the managed GitLab's templates project.

Created or updated at worker start: `<group>/templates` holds
`templates/firecrest-job.yml` on `main`, with the component's default image
set to the RUNNER_IMAGE setting, so entrypoints can include
`$CI_SERVER_FQDN/<group>/templates/firecrest-job@main`.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import gitlab

from middleware.runs.mirror import Git

#: The component as published (workflows/gitlab/templates/firecrest-job.yml), through a link in this
#: package so that an installed wheel carries it too (package data; setuptools copies the target).
COMPONENT = Path(__file__).resolve().parent / "firecrest-job.yml"
_IMAGE_DEFAULT = re.compile(r'(image:\n\s+description: [^\n]*\n\s+default: )"[^"]*"')


def render(image: str, source: Path = COMPONENT) -> str:
    text = source.read_text()
    rendered, count = _IMAGE_DEFAULT.subn(lambda m: f'{m.group(1)}"{image}"', text)
    if count != 1:
        raise ValueError("the component's image input was not found; was the template changed?")
    return rendered


def publish(gl: gitlab.Gitlab, group: str, token: str, image: str) -> str:
    """Create or update the templates project; returns the published commit."""
    from middleware.managed_gitlab.projects import GitLabProjects

    namespace = GitLabProjects(gl, group).ensure_group(group.strip("/"))
    path = f"{group.strip('/')}/templates"
    try:
        project = gl.projects.get(path)
    except gitlab.exceptions.GitlabGetError:
        project = gl.projects.create(
            {"name": "templates", "path": "templates", "namespace_id": namespace.id, "visibility": "public"}
        )
    git = Git(token)
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-templates-") as tmp:
        work = Path(tmp)
        git(work, "init", "--quiet", "-b", "main", what="preparing the templates")
        target = work / "templates" / "firecrest-job.yml"
        target.parent.mkdir(parents=True)
        target.write_text(render(image))
        git(work, "add", ".", what="preparing the templates")
        git(
            work,
            "-c",
            "user.name=firecrest-ci",
            "-c",
            "user.email=firecrest-ci@localhost",
            "commit",
            "--quiet",
            "-m",
            "Publish the firecrest-job component",
            what="preparing the templates",
        )
        git(
            work,
            "push",
            "--quiet",
            "--force",
            "--",
            project.http_url_to_repo,
            "HEAD:refs/heads/main",
            what="publishing the templates",
        )
        return subprocess.run(
            ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
