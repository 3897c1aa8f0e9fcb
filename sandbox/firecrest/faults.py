"""Deterministic fault injection for API requests, from one seeded RNG.

Each API request draws exactly two numbers, whatever it gets, so a given seed
yields the same sequence of faults for the same sequence of requests. For
POST and DELETE, half the injected 5xx answers are "after commit": the request
is fully processed (a job IS submitted, a file IS removed) and only the answer
is lost, which is what makes blindly re-POSTing a submit dangerous.

Tests that need one exact fault on one exact request script it instead
(`POST /_sandbox/faults`): scripted faults are taken in order by the next
matching requests, before (and instead of) any random draw.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import dataclass

FAULT_STATUSES = (500, 502, 503)
COMMITTING_METHODS = ("POST", "DELETE", "PUT", "PATCH")


@dataclass(frozen=True)
class Fault:
    """What to do to one request: `kind` is "timeout", "429", "5xx" or "5xx-after-commit"."""

    kind: str
    status: int = 0
    retry_after: str = "0"

    @property
    def label(self) -> str:
        if self.kind == "timeout":
            return "timeout"
        if self.kind == "429":
            return "429"
        return f"{self.status}-after-commit" if self.kind == "5xx-after-commit" else str(self.status)


class FaultInjector:
    """Draws faults with the configured rates; counts what it injected."""

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not cryptography
        self.injected: Counter[str] = Counter()
        self._scripted: dict[str, deque[Fault]] = {}

    def script(self, request: str, labels: list[str]) -> None:
        """Queue faults (labels as in `Fault.label`) for the next requests `request` ("POST /compute/...")."""
        faults = [parse_label(label) for label in labels]
        with self._lock:
            self._scripted.setdefault(request, deque()).extend(faults)

    def take_scripted(self, request: str) -> Fault | None:
        with self._lock:
            queued = self._scripted.get(request)
            fault = queued.popleft() if queued else None
            if fault is not None:
                self.injected[fault.label] += 1
        return fault

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not cryptography

    def draw(self, method: str, rate_timeout: float, rate_429: float, rate_5xx: float) -> Fault | None:
        if not (rate_timeout or rate_429 or rate_5xx):
            return None
        with self._lock:
            which, detail = self._rng.random(), self._rng.random()
        fault: Fault | None = None
        if which < rate_timeout:
            fault = Fault("timeout")
        elif which < rate_timeout + rate_429:
            fault = Fault("429", 429, "1" if detail < 0.25 else "0")
        elif which < rate_timeout + rate_429 + rate_5xx:
            status = FAULT_STATUSES[min(int(detail * 3), 2)]
            # The fraction within the status band decides before/after commit: independent of the status.
            after = method in COMMITTING_METHODS and (detail * 3) % 1 < 0.5
            fault = Fault("5xx-after-commit" if after else "5xx", status)
        if fault is not None:
            with self._lock:
                self.injected[fault.label] += 1
        return fault

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)

    def reset_counts(self) -> None:
        with self._lock:
            self.injected.clear()


def parse_label(label: str) -> Fault:
    """`timeout`, `429`, `502` or `502-after-commit` (any of the FAULT_STATUSES) as a Fault."""
    if label == "timeout":
        return Fault("timeout")
    if label == "429":
        return Fault("429", 429, "0")
    status, _, after = label.partition("-")
    if not status.isdigit() or int(status) not in FAULT_STATUSES or after not in ("", "after-commit"):
        raise ValueError(f"unknown fault {label!r}: timeout, 429, 500, 502, 503, or <5xx>-after-commit")
    return Fault("5xx-after-commit" if after else "5xx", int(status))


#: The bodies a gateway or an overloaded server in front of FirecREST would send.
FAULT_MESSAGES = {
    429: "Too many requests, slow down",
    500: "Internal server error (injected by the sandbox)",
    502: "Bad gateway (injected by the sandbox)",
    503: "Service temporarily unavailable (injected by the sandbox)",
}
