"""Pass or fail, decided once: COMPLETED with exit code 0, nothing else.

A TIMEOUT job reads exit code 0 on real Slurm, so the exit code alone never
proves success, and neither does the state alone.
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


def judge(
    system: str,
    job_id: str,
    info: dict[str, Any],
    *,
    working_dir: str,
    output_path: str | None,
    stopped_by_runner: str | None = None,
) -> Outcome:
    status = info.get("status") or {}
    state = state_text(status.get("state"))
    raw_code = status.get("exitCode")
    exit_code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
    elapsed_raw = (info.get("time") or {}).get("elapsed")
    elapsed = float(elapsed_raw) if isinstance(elapsed_raw, int | float) else None
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
    )
