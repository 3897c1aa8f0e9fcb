"""Follow one job by id until it ends, streaming its log.

Not pyfirecrest's `wait_for_job`: that swallows errors other than 404. Here a
404 is tolerated only in the first seconds after submit (the scheduler may
not list the job yet), and every other error is the gateway's to retry or
report.
"""

from __future__ import annotations

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
from ci_runner.schedule import PollSchedule, RequestBudget
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
    ) -> None:
        self._gw = gateway
        self._target = target
        self._reporter = reporter
        self._timeout = timeout
        self._pending_timeout = pending_timeout
        self._clock = clock
        self._sleep = sleep
        self._schedule = schedule or PollSchedule()
        self._budget = budget or RequestBudget()
        self.log = LogStream(gateway, target.system, reporter)
        self.last_info: dict[str, Any] | None = None

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

    def _output_path(self) -> str:
        """`standardOutput` from metadata, else the path Slurm would have used."""
        t = self._target
        try:
            metadata = self._gw.job_metadata(t.system, t.job_id)
            path = str((metadata[0] if metadata else {}).get("standardOutput") or "")
        except ApiError:
            path = ""  # metadata is gone once Slurm forgets the job (MinJobAge)
        if not path:
            pattern = t.output_pattern or "slurm-%j.out"
            path = expand_output_pattern(pattern, job_id=t.job_id, job_name=t.job_name, user=t.username)
        if not path.startswith("/"):
            path = f"{t.working_dir.rstrip('/')}/{path}"
        return path

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

    def run(self, submitted_at: float) -> Followed:
        """Poll until a terminal state; raises TimeLimitReached for the runner's limits."""
        started = self._clock()
        announced: str | None = None
        self._reporter.start_log(f"job {self._target.job_id} on {self._target.system}: live log")
        try:
            while True:
                info = self._read_info(submitted_at)
                state = (info or {}).get("status", {}).get("state")
                if info is not None and str(state) != announced:
                    announced = str(state)
                    self._reporter.info(f"job {self._target.job_id} is {announced}")
                if info is not None and self.log.path is None and not is_pending(state):
                    self.log.follow(self._output_path())
                if info is not None and is_terminal(state):
                    break
                self._check_limits(info, submitted_at)
                if self._budget.allows(self._gw.requests, self._clock() - started):
                    self.log.read_new()
                self._sleep(self._schedule.next_interval())
            if self.log.path is None:
                self.log.follow(self._output_path())
            self.log.drain()
        finally:
            self._reporter.end_log()
        assert info is not None
        return Followed(info=info, output_path=self.log.path, log_tail=self.log.tail)
