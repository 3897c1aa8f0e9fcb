"""Pass or fail, decided once: COMPLETED with exit code 0, nothing else.

A TIMEOUT job reads exit code 0 on real Slurm, so the exit code alone never
proves success, and neither does the state alone. Failing tests in JUnit
reports do not change it either.

The record's times and node count also give what the run cost (node-hours)
and how long it queued; FirecREST v2 has no `time.submission`, so the
runner's own clock at submit stands in for it where the record lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_runner.durations import format_duration
from ci_runner.jobscript import STAGING_FAILED_EXIT
from ci_runner.states import base_states, state_text


@dataclass(frozen=True)
class Outcome:
    system: str
    job_id: str
    state: str
    exit_code: int | None
    elapsed: float | None
    working_dir: str
    output_path: str | None
    passed: bool
    reason: str
    #: Nodes allocated (`allocationNodes`); None when the record does not say.
    nodes: int | None = None
    #: Seconds from submit to start; None before the job started.
    queue_wait: float | None = None

    @property
    def node_hours(self) -> float | None:
        if self.nodes is None or self.elapsed is None:
            return None
        return self.nodes * self.elapsed / 3600


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch from a record: a number, or Slurm REST's `{"set": true, "number": N}`."""
    if isinstance(value, dict):
        value = value.get("number") if value.get("set", True) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def _node_count(info: dict[str, Any]) -> int | None:
    """`allocationNodes` (FirecREST v2), else `nodes` when it is a count rather than a node list."""
    for key in ("allocationNodes", "nodes"):
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def judge(
    system: str,
    job_id: str,
    info: dict[str, Any],
    *,
    working_dir: str,
    output_path: str | None,
    stopped_by_runner: str | None = None,
    submitted_at: float | None = None,
) -> Outcome:
    """`submitted_at`: the runner's clock (epoch seconds) when the submit was answered."""
    status = info.get("status") or {}
    state = state_text(status.get("state"))
    raw_code = status.get("exitCode")
    exit_code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
    times = info.get("time") or {}
    elapsed_raw = times.get("elapsed")
    elapsed = (
        float(elapsed_raw)
        if isinstance(elapsed_raw, int | float) and not isinstance(elapsed_raw, bool)
        else None
    )
    started = _epoch(times.get("start"))
    submitted = _epoch(times.get("submission")) or submitted_at
    queue_wait = max(0.0, started - submitted) if started is not None and submitted is not None else None
    passed = stopped_by_runner is None and base_states(status.get("state")) == {"COMPLETED"}
    passed = passed and exit_code == 0
    after = f" after {format_duration(elapsed)}" if elapsed is not None else ""
    if stopped_by_runner:
        reason = stopped_by_runner
    elif passed:
        reason = f"job {job_id} COMPLETED with exit code 0{after}"
    elif "FAILED" in base_states(status.get("state")) or (exit_code or 0) != 0:
        reason = f"job {job_id} {state} with exit code {exit_code}{after}"
        if exit_code == STAGING_FAILED_EXIT:
            reason += " (staging failed: the job could not fetch or unpack the code)"
    else:
        reason = f"job {job_id} {state}{after}"
    return Outcome(
        system=system,
        job_id=job_id,
        state=state,
        exit_code=exit_code,
        elapsed=elapsed,
        working_dir=working_dir,
        output_path=output_path,
        passed=passed,
        reason=reason,
        nodes=_node_count(info),
        queue_wait=queue_wait,
    )
