"""Follow one job by id until it ends, streaming its log; then its last lines, then its state.

Not pyfirecrest's `wait_for_job`: that swallows errors other than 404. Here a
404 is tolerated only in the first seconds after submit (the scheduler may
not list the job yet), and every other error is the gateway's to retry or
report.

While the job runs, the live log's reads are the poll (schedule.py): the job
script's last line is an end marker with a per-run token (logs.py), and a
read that sees it makes the follower ask the scheduler at once, then again
shortly after until the scheduler has the end. Status polls otherwise only
watch for ends the marker cannot report. The final state is always the
scheduler's: a marker printed early (or forged) costs a status read, no more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ci_runner.client import ApiError, Gateway
from ci_runner.durations import format_duration
from ci_runner.errors import InfrastructureError
from ci_runner.jobscript import expand_output_pattern
from ci_runner.logs import LogStream
from ci_runner.report import Reporter
from ci_runner.schedule import (
    CONFIRM_FIRST,
    CONFIRM_GROWTH,
    WATCH_CAP,
    WATCH_FIRST,
    WATCH_GROWTH,
    PollSchedule,
    ReadSchedule,
    RequestBudget,
)
from ci_runner.states import is_pending, is_terminal

#: How long "Job not found." is taken to mean "not listed yet".
NOT_FOUND_GRACE = 20.0


@dataclass(frozen=True)
class Target:
    """Where the job lives and how to find its output when metadata is gone."""

    system: str
    job_id: str
    job_name: str
    working_dir: str
    username: str
    output_pattern: str | None
    error_pattern: str | None = None


@dataclass
class Followed:
    """The last job record, plus the runner's own reason when it stopped the job."""

    info: dict[str, Any]
    output_path: str | None
    log_tail: str
    stopped_by_runner: str | None = None


class TimeLimitReached(Exception):
    """The runner's --timeout or --pending-timeout ran out; the job must be cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Follower:
    """Polls one job to its end while its `LogStream` shows the output, within the request budget."""

    def __init__(
        self,
        gateway: Gateway,
        target: Target,
        reporter: Reporter,
        *,
        timeout: float | None = None,
        pending_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        schedule: PollSchedule | None = None,
        budget: RequestBudget | None = None,
        end_marker: str | None = None,
        read_limit: int | None = None,
    ) -> None:
        self._gw = gateway
        self._target = target
        self._reporter = reporter
        self._timeout = timeout
        self._pending_timeout = pending_timeout
        self._clock = clock
        self._sleep = sleep
        #: Status polls before the job runs, and while the end marker cannot be read.
        self._schedule = schedule or PollSchedule()
        self._budget = budget or RequestBudget()
        self.log = LogStream(gateway, target.system, reporter, marker=end_marker, read_limit=read_limit)
        self.last_info: dict[str, Any] | None = None
        self._announced: str | None = None

    def _read_info(self, submitted_at: float) -> dict[str, Any] | None:
        try:
            jobs = self._gw.job_info(self._target.system, self._target.job_id)
        except ApiError as error:
            if error.status == 404 and self._clock() - submitted_at < NOT_FOUND_GRACE:
                return None
            raise InfrastructureError(
                f"job {self._target.job_id} cannot be read on {self._target.system}: {error.message}"
            ) from None
        if not jobs:
            return None
        info: dict[str, Any] = jobs[0]
        self.last_info = info
        return info

    def _locate(self) -> None:
        """Follow `standardOutput` (and a separate `standardError`) from metadata, else Slurm's paths."""
        t = self._target
        try:
            metadata = self._gw.job_metadata(t.system, t.job_id)
            entry = metadata[0] if metadata else {}
        except ApiError:
            entry = {}  # metadata is gone once Slurm forgets the job (MinJobAge)
        output = str(entry.get("standardOutput") or "") or self._slurm_path(
            t.output_pattern or "slurm-%j.out"
        )
        error = str(entry.get("standardError") or "")
        if not error and t.error_pattern:
            error = self._slurm_path(t.error_pattern)
        self.log.follow(output, error or None)

    def _slurm_path(self, pattern: str) -> str:
        t = self._target
        path = expand_output_pattern(pattern, job_id=t.job_id, job_name=t.job_name, user=t.username)
        return path if path.startswith("/") else f"{t.working_dir.rstrip('/')}/{path}"

    def _check_limits(self, info: dict[str, Any] | None, submitted_at: float) -> None:
        waited = self._clock() - submitted_at
        if self._timeout is not None and waited > self._timeout:
            raise TimeLimitReached(
                f"job {self._target.job_id} exceeded the runner timeout of "
                f"{format_duration(self._timeout)} and was cancelled"
            )
        state = (info or {}).get("status", {}).get("state", "PENDING")
        if self._pending_timeout is not None and waited > self._pending_timeout and is_pending(state):
            raise TimeLimitReached(
                f"job {self._target.job_id} was still pending after "
                f"{format_duration(self._pending_timeout)} and was cancelled"
            )

    def _announce(self, info: dict[str, Any]) -> None:
        state = str(info.get("status", {}).get("state"))
        if state != self._announced:
            self._announced = state
            self._reporter.info(f"job {self._target.job_id} is {state}")

    def run(self, submitted_at: float) -> Followed:
        """Follow to a terminal state; raises TimeLimitReached for the runner's limits."""
        self._reporter.start_log(f"job {self._target.job_id} on {self._target.system}: live log")
        try:
            info = self._watch(submitted_at)
            if self.log.path is None:
                self._locate()
            self.log.drain()
            self._announce(info)  # after the job's last lines
        finally:
            self._reporter.end_log()
        return Followed(info=info, output_path=self.log.path, log_tail=self.log.tail)

    def _watch(self, submitted_at: float) -> dict[str, Any]:
        """Status polls and live reads, each on its own clock, until the scheduler says the job ended."""
        started = self._clock()
        status_at, read_at = started, math.inf
        running_since: float | None = None
        reads = ReadSchedule()
        plain_reads = PollSchedule()  # without a marker, reads only feed the view
        watch = PollSchedule(WATCH_FIRST, WATCH_GROWTH, WATCH_CAP)
        confirm: PollSchedule | None = None
        while True:
            if self._clock() >= status_at:
                info = self._read_info(submitted_at)
                state = (info or {}).get("status", {}).get("state")
                if info is not None and is_terminal(state):
                    return info
                if info is not None:
                    self._announce(info)
                    if running_since is None and not is_pending(state):
                        running_since = self._clock()
                        self._locate()
                        read_at = running_since
                if confirm is not None:
                    gap = confirm.next_interval()
                elif running_since is not None and self.log.marker_readable:
                    gap = watch.next_interval()
                else:
                    gap = self._schedule.next_interval()
                status_at = self._clock() + gap
            self._check_limits(self.last_info, submitted_at)
            if running_since is not None and self._clock() >= read_at:
                wait = self._budget.wait(self._gw.requests, self._clock() - started)
                if wait > 0:
                    read_at = self._clock() + wait
                else:
                    self.log.read_new()
                    now = self._clock()
                    if self.log.saw_end():
                        confirm = PollSchedule(CONFIRM_FIRST, CONFIRM_GROWTH, WATCH_CAP)
                        status_at = now
                    elif not self.log.marker_readable:
                        status_at = min(status_at, now + self._schedule.cap)
                    if self.log.marker_readable or confirm is not None:
                        read_at = now + reads.next_interval(now - running_since)
                    else:
                        read_at = now + plain_reads.next_interval()
            self._sleep(max(0.0, min(status_at, read_at) - self._clock()))
