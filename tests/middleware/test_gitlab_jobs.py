"""middleware.managed_gitlab.jobs against the GitLab stand-in through python-gitlab."""

from __future__ import annotations

import gitlab
import pytest

from middleware.managed_gitlab.jobs import failures_from_report, full_log, jobs_of, junit_failures, log_tail
from middleware.managed_gitlab.projects import GitLabProjects, MirrorProjectSpec, client
from sandbox.gitlab.pipelines import Job, Pipeline
from sandbox.gitlab.server import run_gitlab


@pytest.fixture
def world(tmp_path):
    """A mirror project with one finished pipeline of three jobs, put straight into the stand-in."""
    with run_gitlab(tmp_path / "gitlab") as handle:
        gl = client(handle.url, handle.token)
        project = GitLabProjects(gl, "firecrest-ci").ensure_project(
            MirrorProjectSpec(repository_id=1, pipeline="cpu", entrypoint="ci/cpu.yml", variables={})
        )
        long_log = "".join(f"line {n}\n" for n in range(5000))
        jobs = [
            Job(901, "build", "build", [], None, {}, "success", "built\n",
                "2026-01-01T10:00:00Z", "2026-01-01T10:01:05Z"),
            Job(902, "test", "test", [], None, {}, "failed", long_log + "ERROR: Job failed: exit code 1\n",
                "2026-01-01T10:01:05Z", "2026-01-01T10:03:00Z"),
            Job(903, "deploy", "deploy", [], None, {}, "skipped"),
        ]  # fmt: skip
        pipeline = Pipeline(77, project.id, "main", "a" * 40, {}, jobs, status="failed")
        handle.pipelines[pipeline.id] = pipeline
        yield gl.projects.get(project.id, lazy=True), pipeline


def test_jobs_of_lists_every_job_with_its_duration(world):
    project, pipeline = world
    jobs = jobs_of(project, pipeline.id)
    assert [(j.id, j.name, j.stage, j.status) for j in jobs] == [
        (901, "build", "build", "success"),
        (902, "test", "test", "failed"),
        (903, "deploy", "deploy", "skipped"),
    ]
    assert [j.duration for j in jobs] == [65.0, 115.0, None]
    assert jobs[0].web_url.endswith("/-/jobs/901")
    assert jobs[2].started_at is None


def test_log_tail_reads_the_end_within_its_byte_bound(world):
    project, _ = world
    tail = log_tail(project, 902, lines=3)
    assert tail.splitlines() == ["line 4998", "line 4999", "ERROR: Job failed: exit code 1"]
    small = log_tail(project, 902, lines=1000, max_bytes=100)
    assert len(small.encode()) <= 100
    assert small.splitlines()[0].startswith("line ")  # the cut first line was dropped, not kept in part
    assert all(line.startswith(("line ", "ERROR")) for line in small.splitlines())


def test_full_log_is_cut_and_says_so(world):
    project, _ = world
    text, truncated = full_log(project, 902, max_bytes=1000)
    assert truncated and len(text) == 1000 and text.startswith("line 0\n")
    whole, cut = full_log(project, 901)
    assert (whole, cut) == ("built\n", False)


def test_an_unknown_job_is_gitlabs_404_and_a_pipeline_without_a_report_has_no_failures(world):
    project, pipeline = world
    with pytest.raises(gitlab.exceptions.GitlabGetError) as error:
        log_tail(project, 123456)
    assert error.value.response_code == 404
    assert junit_failures(project, pipeline.id) == []  # GitLab: 200 with an empty report


#: GET /projects/:id/pipelines/:pid/test_report, as GitLab documents it (fields trimmed).
REPORT = {
    "total_count": 4,
    "failed_count": 2,
    "error_count": 1,
    "test_suites": [
        {
            "name": "pytest",
            "test_cases": [
                {"status": "success", "name": "test_ok", "classname": "tests.a", "file": "tests/test_a.py"},
                {
                    "status": "failed",
                    "name": "test_sum",
                    "classname": "tests.test_a",
                    "file": "tests/test_a.py",
                    "stack_trace": ">   assert 1 == 2\n\ntests/test_a.py:12: AssertionError",
                },
                {"status": "error", "name": "test_io", "classname": "tests.test_b", "system_output": "boom"},
                {
                    "status": "failed",
                    "name": "test_c",
                    "classname": "C",
                    "file": None,
                    "stack_trace": "at src/lib.c:40\nat src/main.c:7",
                },
            ],
        },
        {"name": "empty", "test_cases": None},
        "not a suite",
    ],
}


def test_failures_from_the_report_with_file_and_line_when_present():
    found = failures_from_report(REPORT)
    assert [(f.name, f.status, f.file, f.line) for f in found] == [
        ("test_sum", "failed", "tests/test_a.py", 12),
        ("test_io", "error", None, None),
        ("test_c", "failed", "src/main.c", 7),
    ]
    assert found[1].message == "boom"
    assert failures_from_report({}) == []
    assert failures_from_report({"test_suites": [{"test_cases": [7]}]}) == []
