"""Sandbox settings fixed at start, and knobs tests may change while it runs."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SandboxConfig:
    root: Path
    systems: tuple[str, ...] = ("cluster",)
    username: str = "fireuser"
    group: str = "f7tusers"
    client_id: str = "firecrest-ci-sandbox"
    client_secret: str = field(default="sandbox-secret", repr=False)
    #: What the real server sends in `f7t-appversion`.
    api_version: str = "2.x.x"
    max_ops_file_size: int = 5 * 1024 * 1024
    token_lifetime: float = 300.0
    pending_seconds: float = 0.3
    job_invisible_seconds: float = 0.0
    metadata_ttl: float = 300.0
    fault_5xx_rate: float = 0.0
    fault_429_rate: float = 0.0
    fault_timeout_rate: float = 0.0
    fault_timeout_seconds: float = 3.0
    fault_seed: int | None = None
    #: {system: {service: message}} for services reported unhealthy.
    unhealthy: dict[str, dict[str, str]] = field(default_factory=dict)

    def user_root(self, system: str) -> Path:
        """The system's file system: a real local directory jobs can use."""
        return (self.root / system / "users").resolve()


#: Knobs that `PATCH /_sandbox/config` may change at run time.
RUNTIME_KNOBS = (
    "token_lifetime",
    "pending_seconds",
    "job_invisible_seconds",
    "metadata_ttl",
    "fault_5xx_rate",
    "fault_429_rate",
    "fault_timeout_rate",
    "fault_timeout_seconds",
    "fault_seed",
    "unhealthy",
    "max_ops_file_size",
)


class Knobs:
    """The live configuration, swapped whole under a lock; faults draw from one seeded RNG."""

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._config = config
        self.rng = random.Random(config.fault_seed)  # noqa: S311 - seeded faults, not crypto

    @property
    def current(self) -> SandboxConfig:
        with self._lock:
            return self._config

    def update(self, changes: dict[str, Any]) -> SandboxConfig:
        unknown = set(changes) - set(RUNTIME_KNOBS)
        if unknown:
            raise ValueError(f"unknown or fixed knobs: {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "unhealthy":
                if not isinstance(value, dict):
                    raise ValueError("unhealthy must map systems to {service: message}")
                clean[name] = {str(k): {str(s): str(m) for s, m in dict(v).items()} for k, v in value.items()}
            elif name == "fault_seed":
                clean[name] = None if value is None else int(value)
            elif name == "max_ops_file_size":
                clean[name] = int(value)
            else:
                clean[name] = float(value)
        with self._lock:
            self._config = replace(self._config, **clean)
            if "fault_seed" in clean:
                self.rng = random.Random(clean["fault_seed"])  # noqa: S311 - seeded faults
            return self._config

    def draw(self) -> float:
        with self._lock:
            return self.rng.random()
