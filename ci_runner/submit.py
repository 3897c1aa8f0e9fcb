"""Submit exactly one HPC job per run.

A submit POST whose answer is lost (5xx after commit, a timeout, a reset
connection) may still have created the job. So the runner never re-POSTs
blindly: it looks for the run's unique job name for as long as a fresh job
can stay unlisted (the same window `follow` grants a new job's 404s), and
re-POSTs only when the name has not shown up by then. Answers that prove
nothing was created (401, 429, FirecREST's own "unhealthy" 503, sbatch
refusing the script) are never looked up.

For a job that finished within about a second, Slurm may list a placeholder
record (name `allocation`, no working directory) for a while; such a record
is this run's job only if its batch script carries the run's name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ci_runner.client import TRANSIENT_STATUSES, ApiError, Gateway, is_unhealthy
from ci_runner.errors import InfrastructureError, ServiceUnhealthy, UsageError
from ci_runner.follow import NOT_FOUND_GRACE
from ci_runner.health import recheck
from ci_runner.report import Reporter

MAX_SUBMITS = 5
#: How long after an unclear answer the runner keeps looking for the job before a new POST.
LISTING_WINDOW = NOT_FOUND_GRACE
#: First pause between look-ups; it doubles up to `MAX_LOOKUP_PAUSE`.
FIRST_LOOKUP_PAUSE = 0.5
MAX_LOOKUP_PAUSE = 4.0
#: Slurm's placeholder record for a job that ended within about a second.
PLACEHOLDER_NAME = "allocation"
#: sbatch texts that leave open whether slurmctld queued the job.
_SBATCH_UNCLEAR = ("timed out", "Unable to contact", "temporarily unavailable", "Zero Bytes were transmitted")


@dataclass(frozen=True)
class Submitted:
    job_id: str
    #: Monotonic time the answer to the creating POST came (or was lost): a new job's grace starts here.
    submitted_at: float


def is_placeholder(job: dict[str, Any]) -> bool:
    """Slurm's stand-in record: name `allocation` and no working directory."""
    return job.get("name") == PLACEHOLDER_NAME and not job.get("workingDirectory")


def _declares_name(script: str, name: str) -> bool:
    pattern = rf"^#SBATCH\s+(?:--job-name[=\s]\s*|-J\s*){re.escape(name)}\s*$"
    return re.search(pattern, script, flags=re.MULTILINE) is not None


def _placeholder_is_ours(gateway: Gateway, system: str, job_id: str, name: str) -> bool:
    try:
        metadata = gateway.job_metadata(system, job_id)
    except ApiError:
        return False  # not confirmed; the full record will show the name soon
    return any(_declares_name(str(entry.get("script") or ""), name) for entry in metadata)


def find_job_by_name(gateway: Gateway, system: str, name: str) -> str | None:
    """The id of this user's job called `name`, if FirecREST lists one (placeholders checked by script)."""
    jobs = gateway.jobs(system)

    def job_number(job: dict[str, Any]) -> int:
        text = str(job.get("jobId", ""))
        return int(text) if text.isdigit() else 0

    named = [job for job in jobs if job.get("name") == name]
    if named:
        return str(min(named, key=job_number)["jobId"])
    for job in sorted((job for job in jobs if is_placeholder(job)), key=job_number):
        if _placeholder_is_ours(gateway, system, str(job["jobId"]), name):
            return str(job["jobId"])
    return None


def _refused_before_work(error: ApiError) -> bool:
    """401 (token) and 429 (rate limit) are answered before anything runs."""
    return error.status in (401, 429)


def _sbatch_refusal(error: ApiError) -> str | None:
    """sbatch's own refusal (unknown option, partition, account...) inside a 500, if that is what it is."""
    text = error.message.partition("std_err:")[2] or error.message
    if error.status != 500 or "sbatch:" not in text or any(n in text for n in _SBATCH_UNCLEAR):
        return None
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _unclear(error: ApiError) -> bool:
    return error.status in TRANSIENT_STATUSES or error.status == 0


def submit_job(
    gateway: Gateway,
    system: str,
    name: str,
    reporter: Reporter,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    **submit_args: Any,
) -> Submitted:
    """POST the job; after an unclear failure, find it by name before trying again."""
    maybe_created = False
    for attempt in range(1, MAX_SUBMITS + 1):
        try:
            answer = gateway.submit(system, **submit_args)
            return Submitted(str(answer["jobId"]), clock())
        except ApiError as error:
            answered_at = clock()
            _stop_on_definite_answer(gateway, system, name, error, maybe_created)
            if _refused_before_work(error):
                reporter.info(f"submit attempt {attempt} was refused before it ran ({error}); trying again")
                sleep(float(attempt))
                continue
            reporter.info(
                f"submit attempt {attempt} got no clear answer ({error}); looking for job {name} "
                f"for up to {LISTING_WINDOW:g} s before trying again"
            )
        maybe_created = True
        found = _look_for(gateway, system, name, answered_at, clock=clock, sleep=sleep)
        if found:
            reporter.info(f"job {found} was created by submit attempt {attempt}; following it")
            return Submitted(found, answered_at)
    raise InfrastructureError(
        f"FirecREST gave no clear answer to {MAX_SUBMITS} submit attempts on {system}, "
        f"and no job named {name} showed up within {LISTING_WINDOW:g} s of any; nothing is followed"
    )


def _stop_on_definite_answer(
    gateway: Gateway, system: str, name: str, error: ApiError, maybe_created: bool
) -> None:
    """Raise for answers that settle the run: sbatch's refusal, an unhealthy service, a 4xx."""
    earlier = f"; an earlier unclear attempt may have created job {name}" if maybe_created else ""
    if is_unhealthy(error.status, error.message):
        detail = recheck(gateway, system, error.message).rstrip(".")
        consequence = earlier or ". Nothing was submitted."
        raise InfrastructureError(f"cannot submit on {system}: {detail}{consequence}")
    refusal = _sbatch_refusal(error)
    if refusal is not None:
        raise UsageError(f"sbatch refused the job on {system}: {refusal}")
    if not _unclear(error) and not _refused_before_work(error):
        raise UsageError(f"FirecREST refused the job on {system}: {error.message}")


def _look_for(
    gateway: Gateway,
    system: str,
    name: str,
    since: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str | None:
    """Look up `name` until it shows or `LISTING_WINDOW` has passed since `since`; ends with a look-up."""
    pause = FIRST_LOOKUP_PAUSE
    while True:
        try:
            found = find_job_by_name(gateway, system, name)
        except ServiceUnhealthy as error:
            detail = recheck(gateway, system, error.message).rstrip(".")
            raise InfrastructureError(
                f"stopped looking for job {name} on {system}: {detail}. "
                "The unclear submit may have created it; nothing is followed"
            ) from None
        except InfrastructureError as error:
            raise InfrastructureError(
                f"{error.message}. The unclear submit may have created job {name}; nothing is followed"
            ) from None
        if found:
            return found
        left = since + LISTING_WINDOW - clock()
        if left <= 0:
            return None
        sleep(min(pause, left))
        pause = min(pause * 2, MAX_LOOKUP_PAUSE)
