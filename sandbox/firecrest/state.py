"""Everything one sandbox app owns: live knobs, tokens, jobs, faults and counters.

One instance per `create_app`, so several sandboxes can run in one process.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

from sandbox.firecrest.auth import TokenStore
from sandbox.firecrest.config import Knobs, SandboxConfig
from sandbox.firecrest.errors import ApiError
from sandbox.firecrest.faults import FaultInjector
from sandbox.firecrest.jobs import JobManager
from sandbox.firecrest.s3 import ObjectStore

#: The uid of the user in the recorded responses (`CANCELLED by 1001`).
RECORDED_UID = 1001


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.knobs = Knobs(config)
        self.tokens = TokenStore(config.client_id, config.client_secret)
        self.faults = FaultInjector(config.fault_seed)
        # A FirecREST user is never root: when the sandbox runs as root, its user takes the recorded uid.
        self.uid = str(os.getuid() or RECORDED_UID)
        self.gid = str(os.getgid())
        roots = {system: config.user_root(system) for system in config.systems}
        for system in config.systems:
            config.home(system).mkdir(parents=True, exist_ok=True)
        self.jobs = JobManager(
            config.root / ".spool",
            uid=self.uid,
            username=config.username,
            group=config.group,
            account=config.account,
            partition=config.partition,
            roots=roots,
        )
        #: The S3 stand-in behind `/transfer/*` (objects under `<root>/.s3`).
        self.s3 = ObjectStore(config.root / ".s3")
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.token_requests = 0

    @property
    def config(self) -> SandboxConfig:
        return self.knobs.current

    def update(self, changes: dict[str, Any]) -> SandboxConfig:
        updated = self.knobs.update(changes)
        if "fault_seed" in changes:
            self.faults.reseed(updated.fault_seed)
        return updated

    def count(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1

    def count_token(self) -> None:
        with self._lock:
            self.token_requests += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            requests = dict(self.requests)
            tokens = self.token_requests
        return {
            "requests": requests,
            "total": sum(requests.values()),
            "token_requests": tokens,
            "faults": self.faults.counts(),
        }

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests = 0
        self.faults.reset_counts()

    # -- the real server's availability checks (src/firecrest/dependencies.py) ----------

    def require(self, system: str, *services: str) -> SandboxConfig:
        """404 for an unknown system, 503 for the first unhealthy service, in the order given."""
        config = self.config
        if system not in config.systems:
            raise ApiError(404, "System not found")
        broken = config.unhealthy.get(system, {})
        for service in services:
            if service not in broken:
                continue
            if service == "filesystem":
                raise ApiError(
                    503, f"The requested filesystem ({config.user_root(system)} on {system}) is unhealthy."
                )
            raise ApiError(503, f"The {service} service for the requested system ({system}) is unhealthy.")
        return config

    def shutdown(self) -> None:
        self.jobs.shutdown()
