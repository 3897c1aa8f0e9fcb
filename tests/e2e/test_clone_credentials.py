"""Issue 9 §5: a repository URL's credentials never reach the HPC side's files or any output.

The repository is private on the GitLab stand-in (real git smart HTTP, Basic
auth with a token), and the URL is GitLab's `CI_REPOSITORY_URL` form, as the
CI/CD component passes it.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import gitlab

from sandbox.gitlab.server import run_gitlab
from tests.e2e.conftest import run_cli
from tests.gitops import git

JOB_TOKEN = "glcbt-64_s3cr3tJobTokenNeverWritten"


def every_file(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]


def test_a_token_bearing_repository_url_leaks_nowhere(sandbox, tmp_path):
    with run_gitlab(tmp_path / "gitlab") as lab:
        lab.state.tokens.add(JOB_TOKEN)
        client = gitlab.Gitlab(lab.url, private_token=lab.token)
        group = client.groups.create({"name": "hpc", "path": "hpc"})
        client.projects.create({"name": "code", "path": "code", "namespace_id": group.id})
        source = tmp_path / "source"
        source.mkdir()
        git(source, "init", "-q", "-b", "main")
        (source / "answer.txt").write_text("42\n")
        git(source, "add", ".")
        git(source, "commit", "-qm", "one")
        sha = git(source, "rev-parse", "HEAD")
        host = lab.url.removeprefix("http://")
        git(source, "push", "-q", f"http://oauth2:{lab.token}@{host}/hpc/code.git", "main")
        url = f"http://gitlab-ci-token:{JOB_TOKEN}@{host}/hpc/code.git"
        workspace = tmp_path / "workspace"
        workspace.mkdir()
        done = run_cli(
            sandbox,
            *("--system", "cluster", "--staging", "git", "--repo-url", url, "--sha", sha),
            *("--command", 'cat answer.txt; echo "user env: ${FCI_GIT_PASSWORD:-gone}"; git remote -v'),
            *("--cleanup", "never"),
            cwd=workspace,
        )
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout and "user env: gone" in done.stdout
    encoded = base64.b64encode(JOB_TOKEN.encode()).decode()
    for text in (done.stdout, done.stderr):
        assert JOB_TOKEN not in text and encoded not in text
    leaks = [
        path
        for path in every_file(Path(sandbox.handle.root))
        if JOB_TOKEN.encode() in (data := path.read_bytes()) or encoded.encode() in data
    ]
    assert leaks == []
    job = sandbox.jobs_named()[-1]
    workdir = Path(job["workingDirectory"])
    output = Path(job["standardOutput"])
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
