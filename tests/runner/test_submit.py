"""submit.py against a scripted FirecREST: one job per run, whatever the answers say.

The fake is a scheduler with a clock: a POST may create a job and still
answer 502, and a new job is listed only some seconds after it was created
(as job info behaved before FirecREST 2.5.1).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pytest

from ci_runner.client import ApiError
from ci_runner.errors import InfrastructureError, UsageError
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.submit import LISTING_WINDOW, find_job_by_name, submit_job

NAME = "fci-42-1-abcdef"
SCRIPT = f"#!/bin/bash\n#SBATCH --job-name={NAME}\ntrue\n"


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeScheduler:
    """Answers to POSTs in order: "ok", "502" (nothing created) or "502-after-create"."""

    clock: Clock
    answers: list[str]
    invisible_for: float = 3.0
    made: list[dict[str, Any]] = field(default_factory=list)
    posts: list[float] = field(default_factory=list)
    lookups: list[float] = field(default_factory=list)
    extra_jobs: list[dict[str, Any]] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)
    systems_answer: list[dict[str, Any]] = field(default_factory=list)

    class creds:  # noqa: N801 - the attribute pyfirecrest's Gateway has
        firecrest_url = "https://api.example.org/firecrest/v2"

    def _create(self, script: str) -> str:
        job_id = str(100 + len(self.made))
        self.made.append({"jobId": job_id, "name": NAME, "created": self.clock.now, "workingDirectory": "/w"})
        self.scripts[job_id] = script
        return job_id

    def submit(self, system: str, **kwargs: Any) -> dict[str, Any]:
        self.posts.append(self.clock.now)
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "ok":
            return {"jobId": self._create(kwargs["script_str"])}
        if answer == "502-after-create":
            self._create(kwargs["script_str"])
            raise ApiError(502, "Bad gateway")
        status, _, message = answer.partition(" ")
        raise ApiError(int(status), message or "Bad gateway")

    def jobs_listed(self) -> list[dict[str, Any]]:
        visible = [j for j in self.made if self.clock.now >= j["created"] + self.invisible_for]
        return [*self.extra_jobs, *visible]

    def jobs(self, system: str) -> list[dict[str, Any]]:
        self.lookups.append(self.clock.now)
        return [{k: v for k, v in job.items() if k != "created"} for job in self.jobs_listed()]

    def job_metadata(self, system: str, job_id: str) -> list[dict[str, Any]]:
        if job_id not in self.scripts:
            raise ApiError(404, "Job not found.")
        return [{"jobId": job_id, "script": self.scripts[job_id]}]

    def systems(self) -> list[dict[str, Any]]:
        return self.systems_answer


def run_submit(scheduler: FakeScheduler) -> tuple[Any, str]:
    err = io.StringIO()
    submitted = submit_job(
        scheduler,  # type: ignore[arg-type]
        "cluster",
        NAME,
        Reporter(Redactor(), out=io.StringIO(), err=err),
        sleep=scheduler.clock.sleep,
        clock=scheduler.clock,
        working_dir="/w",
        script_str=SCRIPT,
    )
    return submitted, err.getvalue()


@pytest.mark.parametrize("invisible", [3.0, 12.0, LISTING_WINDOW - 1])
def test_a_created_job_listed_late_is_found_not_posted_again(invisible):
    clock = Clock()
    scheduler = FakeScheduler(clock, ["502-after-create"], invisible_for=invisible)
    submitted, err = run_submit(scheduler)
    assert len(scheduler.posts) == 1 and len(scheduler.made) == 1
    assert submitted.job_id == "100"
    assert scheduler.lookups[-1] >= scheduler.posts[0] + invisible  # it kept looking until it showed
    assert "was created by submit attempt 1" in err


def test_the_repost_comes_only_after_the_whole_window_and_ends_with_a_lookup():
    clock = Clock()
    scheduler = FakeScheduler(clock, ["502"])
    submitted, _ = run_submit(scheduler)
    assert len(scheduler.posts) == 2 and len(scheduler.made) == 1
    first, second = scheduler.posts
    assert second - first >= LISTING_WINDOW
    assert scheduler.lookups[-1] >= first + LISTING_WINDOW  # the last pause is followed by a look-up
    gaps = [later - earlier for earlier, later in zip(scheduler.lookups, scheduler.lookups[1:], strict=False)]
    assert max(gaps) <= 4.0 + 1e-9
    # The new job's 404 grace starts at the POST that created it, not at the first attempt.
    assert submitted.submitted_at == pytest.approx(second)


def test_many_unclear_answers_still_make_one_job():
    for answers in (["502", "502-after-create"], ["0 no answer", "502", "ok"], ["504", "502-after-create"]):
        clock = Clock()
        scheduler = FakeScheduler(clock, list(answers))
        submitted, _ = run_submit(scheduler)
        assert len(scheduler.made) == 1, answers
        assert submitted.job_id == scheduler.made[0]["jobId"]


def test_refusals_before_any_work_are_posted_again_without_waiting_for_the_window():
    clock = Clock()
    scheduler = FakeScheduler(clock, ["401 Access token expires too soon", "429 slow down"])
    run_submit(scheduler)
    assert len(scheduler.posts) == 3 and len(scheduler.made) == 1
    assert scheduler.lookups == [] and clock.now - 1000.0 < 5


def test_a_placeholder_record_is_ours_only_if_its_script_says_so():
    clock = Clock()
    scheduler = FakeScheduler(clock, [], invisible_for=0)
    other = {"jobId": "7", "name": "allocation", "workingDirectory": "", "partition": ""}
    scheduler.extra_jobs.append(other)
    scheduler.scripts["7"] = "#!/bin/bash\n#SBATCH --job-name=fci-other-run\ntrue\n"
    assert find_job_by_name(scheduler, "cluster", NAME) is None  # type: ignore[arg-type]
    ours = {"jobId": "8", "name": "allocation", "workingDirectory": "", "partition": ""}
    scheduler.extra_jobs.append(ours)
    scheduler.scripts["8"] = SCRIPT
    assert find_job_by_name(scheduler, "cluster", NAME) == "8"  # type: ignore[arg-type]
    unreadable = {"jobId": "9", "name": "allocation", "workingDirectory": ""}
    scheduler.extra_jobs[:] = [unreadable]
    assert find_job_by_name(scheduler, "cluster", NAME) is None  # type: ignore[arg-type]


def test_a_quick_job_shown_as_placeholder_after_an_unclear_submit_is_followed():
    clock = Clock()
    scheduler = FakeScheduler(clock, ["502-after-create"], invisible_for=3.0)
    original = scheduler.jobs_listed

    def as_placeholders() -> list[dict[str, Any]]:
        return [{**job, "name": "allocation", "workingDirectory": ""} for job in original()]

    scheduler.jobs_listed = as_placeholders  # type: ignore[method-assign]
    submitted, _ = run_submit(scheduler)
    assert (submitted.job_id, len(scheduler.posts), len(scheduler.made)) == ("100", 1, 1)


def test_sbatch_refusing_the_script_is_a_configuration_error_at_once():
    clock = Clock()
    refusal = (
        "500 Unexpected Slurm command response. exit_status:1 std_err:sbatch: error: invalid partition "
        "specified: gpu\nsbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    scheduler = FakeScheduler(clock, [refusal])
    with pytest.raises(UsageError) as error:
        run_submit(scheduler)
    assert "sbatch refused the job on cluster: sbatch: error: invalid partition specified: gpu" in str(
        error.value
    )
    assert len(scheduler.posts) == 1 and scheduler.lookups == []


def test_an_unhealthy_scheduler_stops_the_submit_with_the_health_check_detail():
    clock = Clock()
    unhealthy = "503 The scheduler service for the requested system (cluster) is unhealthy."
    scheduler = FakeScheduler(clock, [unhealthy])
    scheduler.systems_answer = [
        {
            "name": "cluster",
            "servicesHealth": [{"serviceType": "scheduler", "healthy": False, "message": "slurmctld down"}],
            "fileSystems": [{"path": "/users", "defaultWorkDir": True}],
        }
    ]
    with pytest.raises(InfrastructureError) as error:
        run_submit(scheduler)
    message = error.value.message
    assert "scheduler is unhealthy (slurmctld down)" in message and "Nothing was submitted." in message
    assert len(scheduler.posts) == 1 and clock.now == 1000.0
