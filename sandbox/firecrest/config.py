"""Sandbox settings fixed at start, and the knobs tests may change while it runs.

`SandboxConfig` is frozen so a running sandbox never sees a half-applied
change: `Knobs` swaps the whole object under a lock (`PATCH /_sandbox/config`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: The services a real FirecREST v2 server probes per system.
SERVICES = ("scheduler", "ssh", "filesystem")


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox needs; only `root` is required."""

    #: State directory; system S keeps its file system in `<root>/S/users`.
    root: Path
    systems: tuple[str, ...] = ("cluster",)
    username: str = "fireuser"
    group: str = "f7tusers"
    account: str = "f7tacct"
    partition: str = "debug"
    client_id: str = "firecrest-ci-sandbox"
    client_secret: str = field(default="sandbox-secret", repr=False)
    #: The `f7t-appversion` header. pyfirecrest 3.10 assumes 2.6.0 when it cannot parse the header;
    #: the real development head sends "2.x.x" but already has the 2.6.0 features pyfirecrest
    #: gates on that version (`name`/`time_window` filters), so report them honestly as 2.6.0.
    api_version: str = "2.6.0"
    max_ops_file_size: int = 5 * 1024 * 1024
    #: `dataOperation.data_transfer`: "s3" (the sandbox's S3 stand-in serves `/transfer/*`) or
    #: None, as on a server configured without a backend (the recorded ones).
    data_transfer: str | None = "s3"
    #: The S3 backend's `multipart.max_part_size` (S3's own minimum part is 5 MiB).
    s3_max_part_size: int = 5 * 1024 * 1024
    #: The S3 backend's `ttl`: how long presigned URLs stay valid, in seconds.
    s3_url_ttl: int = 3600
    token_lifetime: float = 300.0
    #: How long a job stays PENDING before its process starts.
    pending_seconds: float = 0.3
    #: For this long after submission, job info and metadata answer 404 (a lagging scheduler view).
    job_invisible_seconds: float = 0.0
    #: Metadata (script, output paths) disappears this long after the job ends (Slurm's MinJobAge).
    metadata_ttl: float = 300.0
    #: For this long after a job that ran under a second ends, job info and listings show Slurm's
    #: placeholder record (name `allocation`, empty working directory and partition, no time limit).
    placeholder_seconds: float = 0.0
    fault_5xx_rate: float = 0.0
    fault_429_rate: float = 0.0
    fault_timeout_rate: float = 0.0
    fault_timeout_seconds: float = 3.0
    fault_seed: int | None = None
    #: {system: {service: message}} for services reported unhealthy (scheduler, ssh, filesystem).
    unhealthy: dict[str, dict[str, str]] = field(default_factory=dict)

    def user_root(self, system: str) -> Path:
        """The system's file system: a real local directory that jobs can cd into."""
        return (Path(self.root) / system / "users").resolve()

    def home(self, system: str) -> Path:
        """The user's own directory, created at start (like a home on /users)."""
        return self.user_root(system) / self.username


#: Knobs that `PATCH /_sandbox/config` may change at run time, with their coercions.
RUNTIME_KNOBS = (
    "token_lifetime",
    "pending_seconds",
    "job_invisible_seconds",
    "metadata_ttl",
    "placeholder_seconds",
    "fault_5xx_rate",
    "fault_429_rate",
    "fault_timeout_rate",
    "fault_timeout_seconds",
    "fault_seed",
    "unhealthy",
    "max_ops_file_size",
    "data_transfer",
)


def _unhealthy(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("unhealthy must map systems to {service: message}")
    clean = {str(system): {str(s): str(m) for s, m in services.items()} for system, services in value.items()}
    for services in clean.values():
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {', '.join(sorted(unknown))} (known: {', '.join(SERVICES)})")
    return clean


def coerce_knobs(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate and convert a knob patch; raises ValueError naming what is wrong."""
    unknown = set(changes) - set(RUNTIME_KNOBS)
    if unknown:
        raise ValueError(f"unknown or fixed knobs: {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "unhealthy":
            clean[name] = _unhealthy(value)
        elif name == "fault_seed":
            clean[name] = None if value is None else int(value)
        elif name == "max_ops_file_size":
            clean[name] = int(value)
        elif name == "data_transfer":
            if value not in (None, "s3"):
                raise ValueError('data_transfer must be "s3" or null (no staged transfers)')
            clean[name] = value
        else:
            number = float(value)
            if number < 0 or (name.endswith("_rate") and number > 1):
                raise ValueError(f"{name} out of range: {value}")
            clean[name] = number
    rates = [clean.get(n, 0.0) for n in ("fault_5xx_rate", "fault_429_rate", "fault_timeout_rate")]
    if sum(rates) > 1:
        raise ValueError("fault rates add up to more than 1")
    return clean


class Knobs:
    """The live configuration, replaced whole under a lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._config = config

    @property
    def current(self) -> SandboxConfig:
        with self._lock:
            return self._config

    def update(self, changes: dict[str, Any]) -> SandboxConfig:
        clean = coerce_knobs(changes)
        with self._lock:
            self._config = replace(self._config, **clean)
            return self._config
