"""The GitLab stand-in's jobs API through the unmodified python-gitlab: job fields and durations,
GitLab's pagination and `scope[]`, traces, job and pipeline retry and cancel (the pipeline's
status following its jobs as GitLab computes it), and the pipeline test report and its summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import httpx
import pytest
from gitlab.v4.objects import Project

from sandbox.gitlab.pipelines import Job, Pipeline
from sandbox.gitlab.reports import TestCase
from sandbox.gitlab.server import GitLabHandle, run_gitlab
from tests.gitops import git

World = tuple[GitLabHandle, gitlab.Gitlab, Project]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with run_gitlab(tmp_path / "gitlab") as handle:
        client = gitlab.Gitlab(handle.url, private_token=handle.token, retry_transient_errors=False)
        group = client.groups.create({"name": "ci", "path": "ci"})
        project = client.projects.create({"name": "cpu", "path": "cpu", "namespace_id": group.id})
        yield handle, client, project


def api(handle: GitLabHandle, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{handle.url}/api/v4{path}", params=params, headers={"PRIVATE-TOKEN": handle.token}, timeout=5
    )


def job_of(project: Project, job_id: int) -> dict[str, Any]:
    return dict(project.jobs.get(job_id).attributes)


def test_jobs_carry_gitlabs_fields_and_the_pipeline_follows_them(world: World) -> None:
    handle, _client, project = world
    pipeline = handle.state.add_pipeline(project.id, [("build", "build"), ("test", "test")], ref="main")
    build, test = (j.id for j in pipeline.jobs)
    listed = {j.name: j.attributes for j in project.pipelines.get(pipeline.id).jobs.list(get_all=True)}
    assert listed["build"]["status"] == "pending" and listed["test"]["status"] == "created"
    assert project.pipelines.get(pipeline.id).status == "pending"
    first = listed["build"]
    assert first["duration"] is None and first["started_at"] is None and first["finished_at"] is None
    assert isinstance(first["queued_duration"], float) and first["created_at"].endswith("Z")
    assert first["web_url"].endswith(f"/ci/cpu/-/jobs/{build}") and first["stage"] == "build"
    assert first["pipeline"]["id"] == pipeline.id and first["ref"] == "main"

    handle.state.start_job(build)
    time.sleep(0.05)
    running = job_of(project, build)
    assert running["status"] == "running" and running["duration"] > 0  # grows while running
    assert project.pipelines.get(pipeline.id).status == "running"
    handle.state.finish_job(build, log="built\n")
    done = job_of(project, build)
    assert done["status"] == "success" and isinstance(done["duration"], float)
    assert done["finished_at"] >= done["started_at"] and "failure_reason" not in done
    assert job_of(project, test)["status"] == "pending"  # the next stage was enqueued
    assert project.pipelines.get(pipeline.id).status == "running"

    handle.state.fail_job(test, log="\x1b[31mFAIL\x1b[0m tests/test_a.py\n")
    failed = job_of(project, test)
    assert (failed["status"], failed["failure_reason"]) == ("failed", "script_failure")
    finished = project.pipelines.get(pipeline.id)
    assert finished.status == "failed" and finished.finished_at is not None
    assert isinstance(finished.duration, int)


def test_a_failed_stage_skips_the_next_and_allow_failure_does_not(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(project.id, [("lint", "build"), ("unit", "build"), ("deploy", "deploy")])
    lint, unit, deploy = (j.id for j in pipeline.jobs)
    state.job(lint).allow_failure = True
    state.fail_job(lint)
    state.finish_job(unit)
    assert state.job(deploy).status == "pending"  # an allowed failure lets the next stage run
    state.finish_job(deploy)
    assert project.pipelines.get(pipeline.id).status == "success"

    second = state.add_pipeline(project.id, [("build", "build"), ("test", "test")])
    state.finish_pipeline(second.id, "failed")
    assert [j.status for j in second.latest_jobs()] == ["failed", "skipped"]
    assert project.pipelines.get(second.id).status == "failed"
    with pytest.raises(ValueError, match="is failed"):
        state.finish_job(second.jobs[0].id)
    with pytest.raises(KeyError):
        state.job(123456)


def test_job_lists_are_paginated_as_gitlab_paginates_them(world: World) -> None:
    handle, _client, project = world
    pipeline = handle.state.add_pipeline(project.id, [f"job {n}" for n in range(45)])
    ids = sorted((j.id for j in pipeline.jobs), reverse=True)  # newest first, as GitLab lists them
    jobs = project.pipelines.get(pipeline.id, lazy=True).jobs
    assert [j.id for j in jobs.list(get_all=True)] == ids
    assert [j.id for j in jobs.list(iterator=True, per_page=7)] == ids
    assert [j.id for j in project.jobs.list(get_all=True)] == ids
    assert [j.id for j in project.jobs.list(iterator=True, per_page=10)] == ids

    page = api(handle, f"/projects/{project.id}/pipelines/{pipeline.id}/jobs", page=2)
    headers = page.headers
    assert [j["id"] for j in page.json()] == ids[20:40]
    assert (headers["X-Page"], headers["X-Per-Page"], headers["X-Next-Page"], headers["X-Prev-Page"]) == (
        "2", "20", "3", "1",
    )  # fmt: skip
    assert (headers["X-Total"], headers["X-Total-Pages"]) == ("45", "3")
    assert {'rel="prev"', 'rel="next"', 'rel="first"', 'rel="last"'} == {
        part.split("; ")[1] for part in headers["Link"].split(", ")
    }
    last = api(handle, f"/projects/{project.id}/pipelines/{pipeline.id}/jobs", page=3)
    assert len(last.json()) == 5 and last.headers["X-Next-Page"] == ""
    capped = api(handle, f"/projects/{project.id}/pipelines/{pipeline.id}/jobs", per_page=500)
    assert capped.headers["X-Per-Page"] == "100" and len(capped.json()) == 45
    unc = api(handle, f"/projects/{project.id}/jobs", per_page=10)
    assert "X-Total" not in unc.headers and "X-Total-Pages" not in unc.headers  # GitLab does not count
    assert unc.headers["X-Next-Page"] == "2" and 'rel="last"' not in unc.headers["Link"]
    bad = api(handle, f"/projects/{project.id}/jobs", page="two")
    assert (bad.status_code, bad.json()) == (400, {"error": "page is invalid"})


def test_scope_filters_by_status(world: World) -> None:
    handle, _client, project = world
    pipeline = handle.state.add_pipeline(project.id, ["a", "b", "c"])
    a, b, _c = (j.id for j in pipeline.jobs)
    handle.state.finish_job(a)
    handle.state.fail_job(b)
    jobs = project.pipelines.get(pipeline.id, lazy=True).jobs
    assert {j.id for j in jobs.list(scope=["success", "failed"], get_all=True)} == {a, b}
    assert [j.id for j in project.jobs.list(scope="failed", get_all=True)] == [b]
    assert api(handle, f"/projects/{project.id}/jobs", scope="failed").json()[0]["id"] == b
    with pytest.raises(gitlab.exceptions.GitlabListError) as unknown:
        project.jobs.list(scope=["finished-ish"], get_all=True)
    assert unknown.value.response_code == 400
    assert "scope does not have a valid value" in str(unknown.value)


def test_traces_are_raw_and_unknown_jobs_are_404(world: World) -> None:
    handle, client, project = world
    pipeline = handle.state.add_pipeline(project.id, ["test"])
    job_id = pipeline.jobs[0].id
    assert project.jobs.get(job_id, lazy=True).trace() == b""
    log = "\x1b[0KRunning with gitlab-runner\n\x1b[32;1m$ pytest\x1b[0;m\nécrit\n"
    handle.state.set_job_log(job_id, log)
    handle.state.set_job_log(job_id, "more\n", append=True)
    assert project.jobs.get(job_id, lazy=True).trace() == (log + "more\n").encode()
    raw = api(handle, f"/projects/{project.id}/jobs/{job_id}/trace")
    assert raw.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(gitlab.exceptions.GitlabGetError) as missing:
        project.jobs.get(job_id + 1000, lazy=True).trace()
    assert missing.value.response_code == 404
    with pytest.raises(gitlab.exceptions.GitlabGetError) as gone:
        project.jobs.get(job_id + 1000)
    assert gone.value.response_code == 404
    with pytest.raises(gitlab.exceptions.GitlabGetError) as elsewhere:
        client.projects.get(999, lazy=True).jobs.get(job_id)
    assert elsewhere.value.response_code == 404


def test_retrying_a_job_replaces_it_and_reopens_the_pipeline(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(project.id, [("build", "build"), ("test", "test")])
    build, test = (j.id for j in pipeline.jobs)
    with pytest.raises(gitlab.exceptions.GitlabJobRetryError) as pending:
        project.jobs.get(build, lazy=True).retry()
    assert pending.value.response_code == 403
    assert "Job is not retryable" in str(pending.value)
    state.start_job(build)
    with pytest.raises(gitlab.exceptions.GitlabJobRetryError) as running:
        project.jobs.get(build, lazy=True).retry()
    assert running.value.response_code == 403
    state.fail_job(build, log="boom\n")
    assert state.job(test).status == "skipped"
    assert project.pipelines.get(pipeline.id).status == "failed"

    retried = project.jobs.get(build, lazy=True).retry()
    assert retried["id"] not in (build, test) and retried["name"] == "build"
    assert retried["status"] == "pending" and retried["duration"] is None
    assert state.job(test).status == "created"  # the skipped job after it waits again
    assert project.pipelines.get(pipeline.id).status == "pending"
    jobs = project.pipelines.get(pipeline.id, lazy=True).jobs
    assert [j.id for j in jobs.list(get_all=True)] == [retried["id"], test]
    assert [j.id for j in jobs.list(include_retried=True, get_all=True)] == [retried["id"], test, build]
    assert project.jobs.get(retried["id"], lazy=True).trace() == b""
    with pytest.raises(gitlab.exceptions.GitlabJobRetryError) as twice:
        project.jobs.get(build, lazy=True).retry()  # the old one was replaced already
    assert twice.value.response_code == 403
    with pytest.raises(gitlab.exceptions.GitlabJobRetryError) as unknown:
        project.jobs.get(987654, lazy=True).retry()
    assert unknown.value.response_code == 404

    state.finish_pipeline(pipeline.id)
    assert project.pipelines.get(pipeline.id).status == "success"
    again = project.jobs.get(test, lazy=True).retry()  # a successful job may be retried too
    assert again["status"] == "pending"
    assert project.pipelines.get(pipeline.id).status == "running"


def test_canceling_jobs_and_pipelines(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(project.id, [("build", "build"), ("test", "test")])
    build, test = (j.id for j in pipeline.jobs)
    state.start_job(build)
    canceled = project.jobs.get(build, lazy=True).cancel()
    assert canceled["status"] == "canceled" and canceled["finished_at"] is not None
    assert state.job(test).status == "skipped"
    assert project.pipelines.get(pipeline.id).status == "canceled"
    unchanged = project.jobs.get(build, lazy=True).cancel()  # a finished job: answered as it is
    assert unchanged["status"] == "canceled"
    with pytest.raises(gitlab.exceptions.GitlabJobCancelError) as unknown:
        project.jobs.get(987654, lazy=True).cancel()
    assert unknown.value.response_code == 404

    whole = state.add_pipeline(project.id, [("build", "build"), ("test", "test")])
    answer = project.pipelines.get(whole.id).cancel()
    assert isinstance(answer, dict)
    assert answer["status"] == "canceled"
    assert [j.status for j in whole.latest_jobs()] == ["canceled", "canceled"]
    with pytest.raises(gitlab.exceptions.GitlabPipelineCancelError) as missing:
        project.pipelines.get(999999, lazy=True).cancel()
    assert missing.value.response_code == 404


def test_retrying_a_pipeline_retries_its_failed_and_canceled_jobs(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(project.id, [("ok", "build"), ("bad", "build"), ("test", "test")])
    ok, bad, test = (j.id for j in pipeline.jobs)
    state.finish_job(ok)
    state.fail_job(bad)
    assert project.pipelines.get(pipeline.id).status == "failed"
    answer = project.pipelines.get(pipeline.id).retry()
    assert isinstance(answer, dict)
    assert answer["status"] == "running" and answer["finished_at"] is None
    latest = {j.name: (j.id, j.status) for j in pipeline.latest_jobs()}
    assert latest["ok"] == (ok, "success") and latest["test"] == (test, "created")
    assert latest["bad"][0] != bad and latest["bad"][1] == "pending"
    state.finish_pipeline(pipeline.id)
    assert project.pipelines.get(pipeline.id).status == "success"
    again = project.pipelines.get(pipeline.id).retry()  # nothing to retry: GitLab answers all the same
    assert isinstance(again, dict)
    assert again["status"] == "success"
    with pytest.raises(gitlab.exceptions.GitlabPipelineRetryError) as missing:
        project.pipelines.get(999999, lazy=True).retry()
    assert missing.value.response_code == 404


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="pytest" tests="4">
    <testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" time="0.25"/>
    <testcase classname="tests.test_a" name="test_sum" file="tests/test_a.py" time="1.5">
      <failure message="assert 1 == 2">&gt;   assert 1 == 2

tests/test_a.py:12: AssertionError</failure>
      <system-out>printed</system-out>
    </testcase>
    <testcase classname="tests.test_b" name="test_io" time="0.5"><error message="OSError: disk"/></testcase>
    <testcase classname="tests.test_b" name="test_later" time="0"><skipped message="not yet"/></testcase>
  </testsuite>
</testsuites>
"""


def test_a_pipelines_test_report_and_its_summary(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(
        project.id, [("unit", "test"), ("integration", "test"), ("deploy", "deploy")]
    )
    empty = project.pipelines.get(pipeline.id, lazy=True).test_report.get()
    assert (empty.total_count, empty.test_suites) == (0, [])  # GitLab: 200 and an empty report
    empty_summary = project.pipelines.get(pipeline.id, lazy=True).test_report_summary.get()
    assert empty_summary.total["count"] == 0 and empty_summary.test_suites == []

    state.set_junit_report(pipeline.id, JUNIT, job="unit")
    state.set_test_report(
        pipeline.id,
        [
            {"name": "test_slow", "classname": "it.Flow", "execution_time": 2.0},
            TestCase("test_broken", "failed", "it.Flow", stack_trace="at src/main.c:7"),
        ],
        job=pipeline.jobs[1].id,
    )
    report = project.pipelines.get(pipeline.id, lazy=True).test_report.get().attributes
    counts = {
        k: report[k] for k in ("total_count", "success_count", "failed_count", "skipped_count", "error_count")
    }
    assert counts == {
        "total_count": 6,
        "success_count": 2,
        "failed_count": 2,
        "skipped_count": 1,
        "error_count": 1,
    }
    assert report["total_time"] == pytest.approx(4.25)
    unit, integration = report["test_suites"]
    assert (unit["name"], unit["total_count"], unit["total_time"]) == ("unit", 4, pytest.approx(2.25))
    assert [c["status"] for c in unit["test_cases"]] == ["error", "failed", "success", "skipped"]
    failed = unit["test_cases"][1]
    assert failed == {
        "status": "failed",
        "name": "test_sum",
        "classname": "tests.test_a",
        "file": "tests/test_a.py",
        "execution_time": 1.5,
        "system_output": ">   assert 1 == 2\n\ntests/test_a.py:12: AssertionError\n\nSystem Out:\n\nprinted",
        "stack_trace": None,
    }
    assert unit["test_cases"][0]["system_output"] == "OSError: disk"
    assert integration["name"] == "integration" and integration["test_cases"][0]["name"] == "test_broken"
    assert integration["test_cases"][0]["stack_trace"] == "at src/main.c:7"

    summary = project.pipelines.get(pipeline.id, lazy=True).test_report_summary.get().attributes
    assert summary["total"] == {
        "time": pytest.approx(4.25), "count": 6, "success": 2, "failed": 2, "skipped": 1, "error": 1,
        "suite_error": None,
    }  # fmt: skip
    assert [(s["name"], s["build_ids"]) for s in summary["test_suites"]] == [
        ("unit", [pipeline.jobs[0].id]),
        ("integration", [pipeline.jobs[1].id]),
    ]

    state.set_junit_report(pipeline.id, "<testsuite><testcase", job="deploy")
    broken = project.pipelines.get(pipeline.id, lazy=True).test_report.get().attributes["test_suites"][2]
    assert broken["suite_error"].startswith("JUnit XML parsing failed") and broken["test_cases"] == []
    with pytest.raises(KeyError):
        state.set_test_report(pipeline.id, [], job="nope")
    with pytest.raises(ValueError, match="status"):
        state.set_test_report(pipeline.id, [{"name": "x", "status": "passed"}])
    with pytest.raises(gitlab.exceptions.GitlabGetError) as missing:
        project.pipelines.get(999999, lazy=True).test_report.get()
    assert missing.value.response_code == 404


def test_a_retried_job_drops_its_report(world: World) -> None:
    handle, _client, project = world
    state = handle.state
    pipeline = state.add_pipeline(project.id, ["pytest"])
    state.set_test_report(pipeline.id, [{"name": "t", "status": "failed"}])
    state.fail_job(pipeline.jobs[0].id)
    project.jobs.get(pipeline.jobs[0].id, lazy=True).retry()
    assert project.pipelines.get(pipeline.id, lazy=True).test_report.get().total_count == 0


def test_constructed_pipelines_still_work(world: World) -> None:
    """Tests may still put a `Pipeline` of `Job`s straight into the stand-in."""
    handle, _client, project = world
    jobs = [
        Job(
            901,
            "build",
            "build",
            [],
            None,
            {},
            "success",
            "built\n",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:01:05Z",
        ),
        Job(902, "test", "test", [], None, {}, "failed", "", "2026-01-01T10:01:05Z", "2026-01-01T10:03:00Z"),
    ]
    handle.pipelines[77] = Pipeline(77, project.id, "main", "a" * 40, {}, jobs, status="failed")
    listed = project.pipelines.get(77, lazy=True).jobs.list(get_all=True)
    assert [(j.id, j.duration) for j in listed] == [(902, 115.0), (901, 65.0)]
    retried = project.jobs.get(902, lazy=True).retry()
    assert retried["status"] == "pending" and project.pipelines.get(77).status == "running"


def push(path: Path, url: str, token: str, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-qm", "update")
    git(path, "push", "-q", "--force", url.replace("http://", f"http://oauth2:{token}@"), "HEAD:main")
    return git(path, "rev-parse", "HEAD")


def wait_status(project: Project, pipeline_id: int, wanted: set[str], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(project.pipelines.get(pipeline_id).status)
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"pipeline {pipeline_id} still {status}")


def test_jobs_that_run_for_real_are_retried_for_real(world: World, tmp_path: Path) -> None:
    handle, _client, project = world
    marker = tmp_path / "fixed"
    ci = f"""stages: [build, test]
build:
  stage: build
  script:
    - echo building
    - test -e {marker}
test:
  stage: test
  script: [echo testing]
"""
    push(tmp_path / "src", project.http_url_to_repo, handle.token, {".gitlab-ci.yml": ci})
    pipeline = project.pipelines.create({"ref": "main"})
    assert wait_status(project, pipeline.id, {"failed"}) == "failed"
    build, test = sorted(pipeline.jobs.list(get_all=True), key=lambda j: j.id)
    assert (build.status, test.status) == ("failed", "skipped")
    assert build.failure_reason == "script_failure" and isinstance(build.duration, float)
    assert "ERROR: Job failed: exit code 1" in project.jobs.get(build.id, lazy=True).trace().decode()

    marker.write_text("")
    retried = project.jobs.get(build.id, lazy=True).retry()
    assert wait_status(project, pipeline.id, {"success", "failed"}) == "success"
    assert "building" in project.jobs.get(retried["id"], lazy=True).trace().decode()
    assert project.jobs.get(test.id).status == "success"  # the skipped job ran once reset


def test_with_run_jobs_off_api_pipelines_wait_for_the_test(world: World, tmp_path: Path) -> None:
    handle, _client, project = world
    handle.state.run_jobs = False
    ci = "stages: [test]\nunit:\n  script: [exit 1]\n"
    push(tmp_path / "src", project.http_url_to_repo, handle.token, {".gitlab-ci.yml": ci})
    pipeline = project.pipelines.create({"ref": "main"})
    (job,) = pipeline.jobs.list(get_all=True)
    time.sleep(0.2)
    assert project.jobs.get(job.id).status == "pending"  # nobody runs it
    handle.state.finish_job(job.id, log="all good\n")
    assert project.pipelines.get(pipeline.id).status == "success"
    assert project.jobs.get(job.id, lazy=True).trace() == b"all good\n"


def test_a_real_jobs_junit_artifacts_become_the_pipelines_test_report(world: World, tmp_path: Path) -> None:
    handle, _client, project = world
    case = '<testcase classname="t" name="test_x" time="0.5"><failure message="no">bad</failure></testcase>'
    ci = f"""stages: [test]
pytest:
  script:
    - mkdir -p reports/unit
    - echo '<testsuite name="s">{case}</testsuite>' > reports/unit/junit.xml
    - exit 1
  artifacts:
    when: always
    reports:
      junit: reports/**/*.xml
"""
    push(tmp_path / "src", project.http_url_to_repo, handle.token, {".gitlab-ci.yml": ci})
    pipeline = project.pipelines.create({"ref": "main"})
    assert wait_status(project, pipeline.id, {"failed", "success"}) == "failed"
    report = project.pipelines.get(pipeline.id, lazy=True).test_report.get()
    assert (report.total_count, report.failed_count) == (1, 1)
    (suite,) = report.test_suites
    assert suite["name"] == "pytest" and suite["test_cases"][0]["system_output"] == "bad"


def test_the_tokens_user_is_the_bot_as_gitlab_auth_reads_it(tmp_path):
    with run_gitlab(tmp_path / "gl") as handle:
        client = gitlab.Gitlab(handle.url, private_token=handle.token)
        client.auth()
        assert client.user is not None and client.user.username == "firecrest-ci-bot"
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
            gitlab.Gitlab(handle.url, private_token="not-a-token").auth()
