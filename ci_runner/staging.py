"""Put the code where the job can reach it: a per-run directory, and for
`upload` staging a tarball of the workspace that the job unpacks itself.

The tarball is written to a temporary file and sent by `transfers`: directly
up to the server's limit, through its staging area above it. Only a server
without a usable staging area caps the archive, and then building it stops
as soon as it passes the limit.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ci_runner import transfers
from ci_runner.client import Gateway
from ci_runner.errors import UsageError
from ci_runner.health import SystemInfo
from ci_runner.jobscript import UPLOAD_ARCHIVE
from ci_runner.report import Reporter
from ci_runner.spec import JobSpec


def per_run_dir(default_work_dir: str, username: str, spec: JobSpec) -> str:
    """`<defaultWorkDir>/<user>/firecrest-ci/<owner>/<repo>/<run>`.

    Real centres share the default work path; users may write only below their own name.
    """
    return "/".join(
        [
            default_work_dir.rstrip("/"),
            username,
            "firecrest-ci",
            spec.owner,
            spec.repo,
            spec.run_key,
        ]
    )


@dataclass(frozen=True)
class WorkDir:
    path: str
    #: True for the per-run directory this run created; only that one may be removed.
    owned: bool
    username: str


def prepare_working_dir(gateway: Gateway, spec: JobSpec, system: SystemInfo) -> WorkDir:
    """Create the working directory the job runs in."""
    if spec.working_dir:
        gateway.mkdir(spec.system, spec.working_dir)
        return WorkDir(spec.working_dir, owned=False, username="")
    info = gateway.userinfo(spec.system)
    username = str((info.get("user") or {}).get("name") or "")
    if not username:
        raise UsageError(
            f"FirecREST did not say which user the client acts as on {spec.system}; "
            "pass --working-dir explicitly"
        )
    path = per_run_dir(system.default_work_dir, username, spec)
    gateway.mkdir(spec.system, path)
    return WorkDir(path, owned=True, username=username)


class _TooLarge(Exception):
    """The archive outgrew what a server without staged transfers can take."""


class _CappedFile(io.FileIO):
    """Stops writing as soon as the archive passes the limit: no huge temp files."""

    def __init__(self, path: Path, limit: int | None) -> None:
        super().__init__(path, "wb")
        self._limit = limit

    def write(self, data: bytes) -> int:  # type: ignore[override]
        written = super().write(data)
        if self._limit is not None and self.tell() > self._limit:
            raise _TooLarge
        return written


def workspace_files(workspace: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files in a git checkout; else every file but `.git`."""
    try:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(workspace),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
        names = sorted({n for n in listed.decode().split("\0") if n})
        return [Path(n) for n in names if (workspace / n).is_file()]
    except (subprocess.CalledProcessError, FileNotFoundError):
        return sorted(
            p.relative_to(workspace)
            for p in workspace.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(workspace).parts
        )


def build_archive(workspace: Path, target: Path, limit: int | None) -> int:
    """Write a gzip tarball of the workspace to `target`; its size, or `_TooLarge` past `limit`."""
    with _CappedFile(target, limit) as out, tarfile.open(fileobj=out, mode="w:gz") as archive:
        for relative in workspace_files(workspace):
            archive.add(workspace / relative, arcname=str(relative), recursive=False)
    return target.stat().st_size


def upload_workspace(
    gateway: Gateway, spec: JobSpec, system: SystemInfo, working_dir: str, reporter: Reporter
) -> int:
    """Upload the workspace tarball; returns its size in bytes."""
    limits = transfers.Limits.of(system)
    staged = limits.backend in transfers.SUPPORTED_BACKENDS
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-") as scratch:
        archive = Path(scratch) / UPLOAD_ARCHIVE
        cap = None if staged else limits.max_ops_file_size
        try:
            size = build_archive(spec.workspace, archive, cap)
        except _TooLarge:
            assert cap is not None
            raise UsageError(
                f"the workspace archive is more than {transfers.human_size(cap)}: "
                f"{transfers.no_staged_path(cap, limits)}, so upload staging cannot work; use staging "
                "'git' (the job clones the exact commit itself) or remove large files"
            ) from None
        transfers.upload(
            gateway, spec.system, limits, archive, working_dir, UPLOAD_ARCHIVE, reporter, account=spec.account
        )
        return size
