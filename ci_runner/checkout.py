"""What the local checkout can tell before anything is submitted.

With `--staging git` the job fetches a commit on the HPC side; a commit that
does not exist would only show there, as the job's exit 97. When the
workspace is a clone of the same repository, git can say so up front, and
its HEAD is the natural default commit. Nothing here fails when git or the
repository is missing: the checks then simply do not apply.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from ci_runner.redact import split_userinfo

#: Schemes whose userinfo git can get from a credential helper instead of the URL.
_HELPER_SCHEMES = ("http", "https")


def clone_source(url: str) -> tuple[str, str | None, str | None]:
    """The URL the job may see, and the user and password to hand it separately.

    http(s) URLs lose their whole userinfo (GitLab's `CI_REPOSITORY_URL`
    carries `gitlab-ci-token:<job token>@`). Other schemes keep a user name,
    which ssh needs and which is no secret, and lose any password.
    """
    clean, user, password = split_userinfo(url)
    if clean == url:
        return url, None, None
    scheme = urlsplit(clean).scheme.lower()
    if scheme in _HELPER_SCHEMES:
        return clean, user, password
    if user:
        head, sep, tail = clean.partition("://")
        clean = f"{head}{sep}{user}@{tail}"
    return clean, None, None


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(workspace), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def head_commit(workspace: Path) -> str | None:
    """The full SHA of the workspace's HEAD, if it is a git checkout."""
    return _git(workspace, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")


def _normalised(url: str) -> str:
    clean = split_userinfo(url)[0].strip().rstrip("/")
    clean = re.sub(r"\.git$", "", clean)
    if "://" not in clean and not re.match(r"^[\w.-]+@[\w.-]+:", clean):
        try:
            return str(Path(clean).resolve())
        except (OSError, RuntimeError):
            return clean
    head, sep, tail = clean.partition("://")
    host, slash, path = tail.partition("/")
    return f"{head.lower()}{sep}{host.lower()}{slash}{path}"


def holds_repository(workspace: Path, repo_url: str) -> bool:
    """True if the workspace is a clone of `repo_url` (one of its remotes, or the repository itself)."""
    top = _git(workspace, "rev-parse", "--show-toplevel")
    if top is None:
        return False
    wanted = _normalised(repo_url)
    remotes = _git(workspace, "config", "--get-regexp", r"^remote\..*\.url$") or ""
    urls = [line.split(None, 1)[1] for line in remotes.splitlines() if " " in line]
    return any(_normalised(candidate) == wanted for candidate in [top, *urls])


def commit_missing(workspace: Path, repo_url: str, sha: str) -> bool:
    """True only when certain: a full clone of `repo_url` that lacks the commit."""
    if not holds_repository(workspace, repo_url):
        return False
    if _git(workspace, "rev-parse", "--is-shallow-repository") != "false":
        return False  # a shallow clone may simply not have fetched it
    return _git(workspace, "cat-file", "-e", f"{sha}^{{commit}}") is None
