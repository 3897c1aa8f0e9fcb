"""Submit exactly one HPC job per run.

A submit POST whose answer is lost (5xx after commit, a timeout, a reset
connection) may still have created the job. So the runner never re-POSTs
blindly: it first looks for the run's unique job name, and follows the job
it finds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ci_runner.client import TRANSIENT_STATUSES, ApiError, Gateway
from ci_runner.errors import InfrastructureError, UsageError
from ci_runner.report import Reporter

MAX_SUBMITS = 6
#: Pauses between name look-ups after an unclear submit: the scheduler may
#: take a moment to list a job it has just accepted.
LOOKUP_PAUSES = (0.3, 1.0, 2.0)


def find_job_by_name(gateway: Gateway, system: str, name: str) -> str | None:
    """The id of this user's job called `name`, if FirecREST lists one."""
    matches = [job for job in gateway.jobs(system) if job.get("name") == name]
    if not matches:
        return None
    return str(min(matches, key=lambda job: int(str(job.get("jobId", "0")) or 0))["jobId"])


def _unclear(error: ApiError) -> bool:
    return error.status in TRANSIENT_STATUSES or error.status in (0, 401, 429)


def submit_job(
    gateway: Gateway,
    system: str,
    name: str,
    reporter: Reporter,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **submit_args: Any,
) -> str:
    """POST the job; after an unclear failure, find it by name before trying again."""
    wait = 0.5
    for attempt in range(1, MAX_SUBMITS + 1):
        try:
            answer = gateway.submit(system, **submit_args)
            return str(answer["jobId"])
        except ApiError as error:
            if not _unclear(error):
                raise UsageError(f"FirecREST refused the job on {system}: {error.message}") from None
            reporter.info(
                f"submit attempt {attempt} got no clear answer ({error}); "
                "checking whether the job exists before trying again"
            )
        for pause in LOOKUP_PAUSES:
            found = find_job_by_name(gateway, system, name)
            if found:
                reporter.info(f"job {found} was created by the earlier attempt; following it")
                return found
            sleep(pause)
        sleep(wait)
        wait = min(wait * 2, 10.0)
    raise InfrastructureError(
        f"FirecREST gave no clear answer to {MAX_SUBMITS} submit attempts on {system}, "
        f"and no job named {name} exists; nothing is running"
    )
