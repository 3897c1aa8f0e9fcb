"""Is the target system there and able to take a job? Checked before anything is staged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_runner.client import Gateway
from ci_runner.errors import InfrastructureError, UsageError

#: Services a CI job needs: the scheduler to run it, the file system for its
#: files, and ssh, through which FirecREST reaches both.
REQUIRED_SERVICES = ("scheduler", "filesystem", "ssh")


@dataclass(frozen=True)
class SystemInfo:
    name: str
    default_work_dir: str
    max_direct_transfer: int | None


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
    return SystemInfo(
        name=system,
        default_work_dir=str(default["path"]).rstrip("/") or "/",
        max_direct_transfer=int(limit) if limit else None,
    )


def check_system(gateway: Gateway, system: str) -> SystemInfo:
    info = describe_system(system, gateway.systems(), gateway.creds.firecrest_url)
    if info.max_direct_transfer:
        gateway.set_max_direct_transfer(info.max_direct_transfer)
    return info
