"""Is the target system there and able to take a job? Checked before anything is staged.

The first request of a run is also where a wrong `FIRECREST_URL` shows, so
its definite refusals are configuration errors that name the URL.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from ci_runner.client import ENV_URL, ApiError, Gateway
from ci_runner.errors import InfrastructureError, UsageError
from ci_runner.redact import public_url

#: Services a CI job needs: the scheduler to run it, the file system for its
#: files, and ssh, through which FirecREST reaches both.
REQUIRED_SERVICES = ("scheduler", "filesystem", "ssh")


@dataclass(frozen=True)
class SystemInfo:
    name: str
    default_work_dir: str
    max_direct_transfer: int | None
    #: Every file system path FirecREST serves on the system; file operations work only below them.
    file_systems: tuple[str, ...] = ()
    #: The staged-transfer backend (`dataOperation.data_transfer`'s type, e.g. "s3"), None without one.
    staged_transfer: str | None = None


def describe_system(system: str, systems: list[dict[str, Any]], url: str) -> SystemInfo:
    """Pure check of a `/status/systems` answer; raises with a message a user can act on."""
    by_name = {str(s.get("name")): s for s in systems}
    entry = by_name.get(system)
    if entry is None:
        known = ", ".join(sorted(by_name)) or "none"
        raise UsageError(f"system {system!r} is not known to FirecREST at {url}; known systems: {known}")
    problems = []
    for service in entry.get("servicesHealth") or []:
        kind = service.get("serviceType")
        if kind in REQUIRED_SERVICES and service.get("healthy") is False:
            detail = service.get("message") or "no details given"
            problems.append(f"{kind} is unhealthy ({detail})")
    if problems:
        raise InfrastructureError(
            f"system {system} is not available: {'; '.join(problems)}. Nothing was submitted."
        )
    file_systems = entry.get("fileSystems") or []
    default = next((fs for fs in file_systems if fs.get("defaultWorkDir")), None)
    default = default or (file_systems[0] if file_systems else None)
    if default is None or not default.get("path"):
        raise UsageError(f"system {system} declares no file system to work in; pass --working-dir explicitly")
    data_ops = entry.get("dataOperation") or {}
    limit = data_ops.get("max_ops_file_size") or data_ops.get("maxOpsFileSize")
    backend = data_ops.get("data_transfer") or data_ops.get("dataTransfer") or {}
    kind = backend.get("serviceType") or backend.get("service_type") if isinstance(backend, dict) else None
    return SystemInfo(
        name=system,
        default_work_dir=str(default["path"]).rstrip("/") or "/",
        max_direct_transfer=int(limit) if limit else None,
        file_systems=tuple(str(fs["path"]) for fs in file_systems if fs.get("path")),
        staged_transfer=str(kind) if kind else None,
    )


def check_working_dir(info: SystemInfo, path: str | None) -> None:
    """A given working directory must lie on one of the system's file systems (else FirecREST says 400)."""
    if not path or not info.file_systems:
        return
    norm = posixpath.normpath(path)
    for root in info.file_systems:
        root = posixpath.normpath(root)
        if norm == root or norm.startswith(root.rstrip("/") + "/"):
            return
    raise UsageError(
        f"working directory {path} is not on a file system FirecREST serves on {info.name} "
        f"({', '.join(info.file_systems)}); pass a --working-dir below one of them, or none for the default"
    )


def check_system(gateway: Gateway, system: str) -> SystemInfo:
    url = public_url(gateway.creds.firecrest_url)
    try:
        systems = gateway.systems()
    except ApiError as error:
        raise UsageError(
            f"FirecREST at {url} answered {error.status} to GET /status/systems ({error.message}); "
            f"check {ENV_URL}: it should be the API's base URL, like https://api.example.org/firecrest/v2"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{url} does not answer like a FirecREST v2 API (GET /status/systems); check {ENV_URL}"
        ) from None
    return describe_system(system, systems, url)


def recheck(gateway: Gateway, system: str, fallback: str) -> str:
    """After a 503 "unhealthy": what `/status/systems` says now, or `fallback` if it sees no problem."""
    try:
        systems = gateway.systems()
    except (ApiError, InfrastructureError, UsageError, ValueError, KeyError, TypeError):
        return fallback
    try:
        describe_system(system, systems, public_url(gateway.creds.firecrest_url))
    except InfrastructureError as error:
        return error.message.removesuffix(" Nothing was submitted.")
    except UsageError:
        pass
    return fallback
