"""JobSpec: the validated, immutable description of one run.

Both front ends (CLI flags and the Action's `INPUT_*`) build the same
`RawInputs` and call `build_spec`, so validation and defaults live once.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ci_runner.checkout import clone_source, commit_missing, head_commit
from ci_runner.durations import parse_duration
from ci_runner.errors import UsageError

STAGING_MODES = ("git", "upload", "none")
CLEANUP_MODES = ("on-success", "always", "never")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_PATH_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RawInputs:
    """What the user typed, before validation; every field is text or a list of text."""

    system: str = ""
    script: str = ""
    command: str = ""
    account: str = ""
    partition: str = ""
    reservation: str = ""
    working_dir: str = ""
    env: tuple[str, ...] = ()
    staging: str = ""
    repo_url: str = ""
    sha: str = ""
    cleanup: str = ""
    timeout: str = ""
    pending_timeout: str = ""
    artifacts: tuple[str, ...] = ()
    artifacts_dir: str = ""
    #: JUnit report globs; each item may hold several, one per line.
    junit: tuple[str, ...] = ()
    workspace: str = ""
    repository: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class JobSpec:
    """Everything the lifecycle needs to know, checked up front."""

    system: str
    script_text: str
    script_name: str
    account: str | None
    partition: str | None
    reservation: str | None
    working_dir: str | None
    env: dict[str, str] = field(default_factory=dict)
    staging: str = "git"
    #: Without credentials: those travel in `repo_username`/`repo_password`, never in a script or log.
    repo_url: str | None = None
    sha: str | None = None
    repo_username: str | None = field(default=None, repr=False)
    repo_password: str | None = field(default=None, repr=False)
    cleanup: str = "on-success"
    timeout: float | None = None
    pending_timeout: float | None = None
    artifacts: tuple[str, ...] = ()
    artifacts_dir: Path = Path("firecrest-artifacts")
    junit: tuple[str, ...] = ()
    workspace: Path = Path()
    owner: str = "local"
    repo: str = "workspace"
    run_key: str = ""

    @property
    def job_name(self) -> str:
        """Unique per run: how a lost submit answer is found again without a second job."""
        return f"fci-{self.run_key}"


def parse_env(lines: tuple[str, ...]) -> dict[str, str]:
    """`K=V` items (blank lines and `#` comments skipped) into a dict."""
    env: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _ENV_NAME.fullmatch(name):
            raise UsageError(
                f"env entry {name or line!r} is not NAME=value with NAME like [A-Za-z_][A-Za-z0-9_]*"
            )
        env[name] = value
    return env


def _url_owner_repo(repo_url: str) -> str:
    """`owner/repo` from the URL's path (its last two parts), never from a port or credentials.

    With a one-part path (`git://host:9419/proj.git`) the host stands in for the owner.
    """
    if "://" in repo_url:
        parts = urlsplit(repo_url)
        host, path = parts.hostname or "", parts.path
    elif re.match(r"^[^/]*:", repo_url):  # scp-like: [user@]host:path
        host, _, path = repo_url.partition(":")
        host = host.rpartition("@")[2]
    else:
        host, path = "", repo_url
    names = [part for part in path.split("/") if part]
    if names:
        names[-1] = re.sub(r"\.git$", "", names[-1])
    if len(names) == 1 and host:
        names.insert(0, host)
    return "/".join(names[-2:])


def _owner_repo(repository: str, repo_url: str, workspace: Path) -> tuple[str, str]:
    candidate = repository.strip()
    if not candidate and repo_url:
        candidate = _url_owner_repo(repo_url)
    if "/" not in candidate:
        candidate = f"local/{workspace.resolve().name or 'workspace'}"
    owner, _, repo = candidate.partition("/")
    return _PATH_PART.sub("-", owner) or "local", _PATH_PART.sub("-", repo) or "workspace"


def _new_run_key(run_id: str) -> str:
    base = _PATH_PART.sub("-", run_id.strip()) if run_id.strip() else time.strftime("%Y%m%d%H%M%S")
    return f"{base}-{secrets.token_hex(3)}"


def _one_of(value: str, allowed: tuple[str, ...], what: str, default: str) -> str:
    chosen = value.strip().lower() or default
    if chosen not in allowed:
        raise UsageError(f"{what} {value!r} is not one of: {', '.join(allowed)}")
    return chosen


def _read_script(script: str, workspace: Path) -> tuple[str, str]:
    path = Path(script)
    if not path.is_absolute():
        path = workspace / path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"script {script!r} not found (looked at {path}); check out the repository first "
            "(actions/checkout in GitHub Actions), or pass --workspace"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"script {script!r} cannot be read: {exc}") from None
    if not text.strip():
        raise UsageError(f"script {script!r} is empty")
    return text, path.name


def build_spec(raw: RawInputs) -> JobSpec:
    """Validate everything before any request is made; bad input costs nothing."""
    system = raw.system.strip()
    if not system:
        raise UsageError("no system given: pass --system (Action input `system`)")
    if not _SYSTEM_NAME.fullmatch(system):
        raise UsageError(f"system name {system!r} has characters a system name cannot have")

    workspace = Path(raw.workspace or os.getcwd())
    if raw.script.strip() and raw.command.strip():
        raise UsageError("give either a script or a command, not both")
    if raw.script.strip():
        script_text, script_name = _read_script(raw.script.strip(), workspace)
    elif raw.command.strip():
        script_text, script_name = f"#!/bin/bash\n{raw.command.strip()}\n", "command"
    else:
        raise UsageError("nothing to run: pass --script PATH or --command 'CMD'")

    staging = _one_of(raw.staging, STAGING_MODES, "staging", "git")
    clone_url, repo_username, repo_password = clone_source(raw.repo_url.strip())
    repo_url = clone_url or None
    sha = raw.sha.strip() or None
    if staging == "git":
        if not repo_url:
            raise UsageError(
                "staging 'git' needs the repository URL: pass --repo-url "
                "(in the Action it comes from GITHUB_SERVER_URL and GITHUB_REPOSITORY), "
                "or use --staging upload|none"
            )
        sha = sha or head_commit(workspace)
        if not sha:
            raise UsageError(
                f"staging 'git' needs the commit to check out: pass --sha (GITHUB_SHA in the Action), "
                f"or run from a git checkout, whose HEAD is taken ({workspace} is none)"
            )
        if not _SHA.fullmatch(sha):
            raise UsageError(
                f"staging 'git' needs a commit SHA (7 to 64 hex digits) to check out, got {sha!r}: "
                "pass --sha (GITHUB_SHA in the Action)"
            )
        if repo_url.startswith("-"):
            raise UsageError(f"repository URL {repo_url!r} cannot start with '-'")
        if commit_missing(workspace, repo_url, sha):
            raise UsageError(
                f"commit {sha} is not in {workspace}, a full clone of {repo_url}; pass an existing "
                "commit with --sha (or fetch first if it is newer than this clone)"
            )
    if staging == "upload" and not workspace.is_dir():
        raise UsageError(f"workspace {workspace} is not a directory; nothing to upload")

    working_dir = raw.working_dir.strip() or None
    if working_dir and not working_dir.startswith("/"):
        raise UsageError(f"working directory {working_dir!r} must be an absolute path")

    owner, repo = _owner_repo(raw.repository, repo_url or "", workspace)
    return JobSpec(
        system=system,
        script_text=script_text,
        script_name=script_name,
        account=raw.account.strip() or None,
        partition=raw.partition.strip() or None,
        reservation=raw.reservation.strip() or None,
        working_dir=working_dir,
        env=parse_env(raw.env),
        staging=staging,
        repo_url=repo_url,
        sha=sha,
        repo_username=repo_username,
        repo_password=repo_password,
        cleanup=_one_of(raw.cleanup, CLEANUP_MODES, "cleanup", "on-success"),
        timeout=parse_duration(raw.timeout, what="timeout") if raw.timeout.strip() else None,
        pending_timeout=(
            parse_duration(raw.pending_timeout, what="pending timeout")
            if raw.pending_timeout.strip()
            else None
        ),
        artifacts=tuple(a.strip() for a in raw.artifacts if a.strip()),
        artifacts_dir=Path(raw.artifacts_dir.strip() or workspace / "firecrest-artifacts"),
        junit=tuple(g.strip() for item in raw.junit for g in item.splitlines() if g.strip()),
        workspace=workspace,
        owner=owner,
        repo=repo,
        run_key=_new_run_key(raw.run_id),
    )
