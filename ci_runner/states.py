"""Slurm job states as FirecREST reports them: the one place the sets are defined."""

from __future__ import annotations

from typing import Any

TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"})


def state_text(raw: Any) -> str:
    """The state as shown to users: `CANCELLED by 1001`; a list becomes `A,B`."""
    if isinstance(raw, list | tuple):
        return ",".join(str(part) for part in raw)
    return str(raw or "UNKNOWN")


def base_states(raw: Any) -> set[str]:
    """`CANCELLED by 1001` -> {CANCELLED}; `["FAILED", "NODE_FAIL"]` -> both."""
    parts = raw if isinstance(raw, list | tuple) else str(raw or "").split(",")
    return {str(part).strip().split(" ")[0].upper() for part in parts if str(part).strip()}


def is_terminal(raw: Any) -> bool:
    return bool(base_states(raw) & TERMINAL_STATES)


def is_pending(raw: Any) -> bool:
    states = base_states(raw)
    return bool(states) and states <= PENDING_STATES
