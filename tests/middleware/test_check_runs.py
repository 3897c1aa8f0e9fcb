"""Check runs (App mode) through the unmodified PyGithub against the GitHub stand-in: one check
run per run, queued -> in_progress -> completed, the jobs table, masked log tails, JUnit
annotations in batches of 50, and no second check run after a crash between create and record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, GithubIntegration

from middleware.managed_gitlab.jobs import CaseFailure, JobView
from middleware.runs.check_details import render
from middleware.sources.base import Annotation, ReportFailed, RunDetails, Status
from middleware.sources.github.checks import CheckRunReporter, conclusion, phase
from sandbox.github.server import GitHubHandle, run_github

SHA = "c" * 40
REPO = "octo-org/hpc-code"
CI_SECRET = "planted-ci-variable-value-42"
CLIENT_SECRET = "firecrest-client-secret-xyz"


@pytest.fixture(scope="module")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def github(private_key: str) -> Iterator[tuple[GitHubHandle, str]]:
    """The stand-in with the App installed on the repository, and an installation token."""
    with run_github() as gh:
        gh.state.add_org("octo-org")
        gh.state.add_repo(REPO)
        app = gh.state.register_app("firecrest-ci", private_key, app_id=4242)
        installation = gh.state.install_app(app.id, "octo-org", [REPO])
        integration = GithubIntegration(auth=Auth.AppAuth(app.id, private_key), base_url=gh.url, retry=None)
        token = integration.get_access_token(installation.id).token
        integration.close()
        yield gh, token


def reporter(gh: GitHubHandle) -> CheckRunReporter:
    return CheckRunReporter(gh.url, write_interval=0, timeout=5)


def status(run_state: str, state: str = "pending", **fields: Any) -> Status:
    values: dict[str, Any] = {
        "state": state,
        "context": "firecrest-ci/cpu",
        "description": "pipeline failed on daint" if run_state == "failed" else f"{run_state} on daint",
        "url": "https://ci.example.org/runs/17",
        "run_id": 17,
        "run_state": run_state,
    }
    values.update(fields)
    return Status(**values)


T0, T1, T2 = "2026-01-01T10:00:00Z", "2026-01-01T10:01:05Z", "2026-01-01T10:01:17Z"
JOBS = [
    JobView(1, "build", "build", "success", 65.0, "https://gl/-/jobs/1", T0, T1),
    JobView(2, "test|unit", "test", "failed", 12.4, "https://gl/-/jobs/2", T1, T2),
]


PATH = "tests/test_a.py"


def failures(count: int) -> list[CaseFailure]:
    return [
        CaseFailure("pytest", "tests.test_a", f"test_{n}", "failed", f"assert {CI_SECRET} == 0", PATH, n + 1)
        for n in range(count)
    ]


def details(count: int = 0) -> RunDetails:
    tail = f"running\nexport TOKEN={CI_SECRET}\nclient {CLIENT_SECRET}\n```\nERROR: Job failed: exit code 1"
    return render(
        JOBS,
        {2: tail},
        failures(count),
        title="pipeline failed on daint",
        pipeline_url="https://gl/p/9",
        secrets=[CI_SECRET, CLIENT_SECRET, ""],
    )


def test_render_makes_a_masked_jobs_table_log_tails_and_annotations():
    made = details(3)
    assert "| [build](https://gl/-/jobs/1) | build | ✅ success | 1m 05s |" in made.summary
    assert "test\\|unit" in made.summary and "2 jobs, 1 failed" in made.summary
    assert "ERROR: Job failed: exit code 1" in made.text
    assert "````text" in made.text  # a ``` in the log cannot close the fence
    notes = "".join(a.message + a.title for a in made.annotations)
    everything = made.title + made.summary + made.text + notes
    assert CI_SECRET not in everything and CLIENT_SECRET not in everything and "[MASKED]" in made.text
    assert [(a.path, a.start_line, a.level) for a in made.annotations] == [
        ("tests/test_a.py", 1, "failure"),
        ("tests/test_a.py", 2, "failure"),
        ("tests/test_a.py", 3, "failure"),
    ]
    assert (made.started_at, made.completed_at) == ("2026-01-01T10:00:00Z", "2026-01-01T10:01:17Z")


def test_phases_and_conclusions():
    assert [phase(s) for s in ("queued", "mirrored", "pending", "running", "success", "error")] == [
        "queued", "queued", "in_progress", "in_progress", "completed", "completed",
    ]  # fmt: skip
    assert conclusion(status("success")) == "success"
    assert conclusion(status("failed")) == "failure"
    assert conclusion(status("canceled")) == "cancelled"
    late = "could not start within 30 min: GitLab down"
    assert conclusion(status("error", description=late)) == "timed_out"
    assert conclusion(status("error", description="could not start: bad entrypoint")) == "failure"


def test_one_check_run_goes_queued_in_progress_completed(github):
    gh, token = github
    checks = reporter(gh)
    first = checks.post(token, REPO, SHA, status("queued"))
    (made,) = gh.state.check_runs_for(REPO, SHA)
    assert (made.id, made.status, made.name, made.external_id) == (first, "queued", "firecrest-ci/cpu", "17")
    assert made.details_url == "https://ci.example.org/runs/17"
    progress = RunDetails("running", "jobs so far", started_at="2026-01-01T10:00:00Z")
    assert checks.post(token, REPO, SHA, status("running", check_run_id=first, details=progress)) == first
    (made,) = gh.state.check_runs_for(REPO, SHA)
    assert made.status == "in_progress" and made.started_at.startswith("2026-01-01T10:00:00")
    final = status("failed", state="failure", check_run_id=first, details=details(2))
    assert checks.post(token, REPO, SHA, final) == first
    (made,) = gh.state.check_runs_for(REPO, SHA)
    assert (made.status, made.conclusion) == ("completed", "failure")
    assert "| [build](https://gl/-/jobs/1) |" in made.output["summary"]
    assert CI_SECRET not in str(made.output) + str(made.annotations)
    assert len(made.annotations) == 2
    assert checks.posted(token, REPO, SHA, final)


def test_more_than_50_annotations_go_in_batches_and_a_repeat_adds_none(github):
    gh, token = github
    checks = reporter(gh)
    final = status("failed", state="failure", details=details(120))
    check_run = checks.post(token, REPO, SHA, final)
    (made,) = gh.state.check_runs_for(REPO, SHA)
    assert len(made.annotations) == 120  # the stand-in refuses more than 50 per request, as GitHub does
    assert [a["start_line"] for a in made.annotations] == list(range(1, 121))
    assert checks.post(token, REPO, SHA, final) == check_run  # retried after a lost answer
    (made,) = gh.state.check_runs_for(REPO, SHA)
    assert len(made.annotations) == 120


def test_a_crash_between_create_and_record_makes_no_second_check_run(github):
    gh, token = github
    checks = reporter(gh)
    created = checks.post(token, REPO, SHA, status("queued"))  # ... and the worker died before recording it
    again = checks.post(token, REPO, SHA, status("running"))  # no check_run_id known: found by external id
    assert again == created
    other = checks.post(token, REPO, SHA, status("queued", run_id=18))  # another run: its own check run
    assert other != created
    assert len(gh.state.check_runs_for(REPO, SHA)) == 2


def test_a_refused_token_is_a_readable_report_failure_without_the_token(github):
    gh, _ = github
    with pytest.raises(ReportFailed) as error:
        reporter(gh).post("ghs_not-a-real-token-0123", REPO, SHA, status("queued"))
    assert "401" in str(error.value) and "ghs_" not in str(error.value)


def test_annotation_without_a_file_is_left_out():
    made = render([], {}, [CaseFailure("s", "c", "n", "failed", "boom", None, None)], title="t",
                  pipeline_url=None, secrets=[])  # fmt: skip
    assert made.annotations == ()
    assert isinstance(Annotation("a", 1, 1, "failure", "m"), Annotation)
