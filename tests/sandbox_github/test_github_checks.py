"""The Checks API on the stand-in through the unmodified PyGithub: runs written by an App
installation, GitHub's validation, suites, and the "Re-run" webhooks."""

from __future__ import annotations

import datetime as dt

import pytest
from github import Auth, GithubException

SHA = "a" * 40


@pytest.fixture
def repo(world):
    inst = world.gh.state.install_app(world.app_id, "octo-org", ["octo-org/hpc-code"])
    github = world.client(world.app_auth().get_installation_auth(inst.id))
    return github.get_repo("octo-org/hpc-code")


def annotation(line):
    return {
        "path": "src/solver.f90",
        "start_line": line,
        "end_line": line,
        "annotation_level": "warning",
        "message": f"unused variable on line {line}",
    }


def test_a_run_from_queued_to_completed_with_annotations(world, repo):
    run = repo.create_check_run(
        "firecrest-ci / cpu",
        SHA,
        details_url="https://ci.example.org/runs/1",
        external_id="pipeline-1",
        status="queued",
    )
    assert (run.status, run.conclusion, run.head_sha, run.external_id) == ("queued", None, SHA, "pipeline-1")
    assert run.app.slug == "firecrest-ci"
    assert [p.number for p in run.pull_requests] == [7]
    run.edit(status="in_progress", started_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert run.status == "in_progress"
    run.edit(
        output={
            "title": "Tests",
            "summary": "50 warnings",
            "annotations": [annotation(i) for i in range(1, 51)],
        }
    )
    run.edit(
        conclusion="failure",
        output={
            "title": "Tests",
            "summary": "51 warnings",
            "text": "details",
            "annotations": [annotation(51)],
        },
        actions=[{"label": "Retry", "description": "Run the job again", "identifier": "retry"}],
    )
    again = repo.get_check_run(run.id)
    assert (again.status, again.conclusion) == ("completed", "failure")
    assert again.completed_at is not None
    assert again.started_at == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (again.output.title, again.output.summary, again.output.annotations_count) == (
        "Tests",
        "51 warnings",
        51,
    )
    lines = [a.start_line for a in again.get_annotations()]
    assert lines == list(range(1, 52))
    recorded = world.gh.state.check_runs_for("octo-org/hpc-code", SHA)
    assert [r.name for r in recorded] == ["firecrest-ci / cpu"]
    assert recorded[0].actions[0]["identifier"] == "retry"


def test_runs_are_listed_per_commit_with_filters(repo):
    first = repo.create_check_run("lint", SHA, status="completed", conclusion="success")
    repo.create_check_run("lint", SHA, status="in_progress")  # a re-run: the latest wins by default
    repo.create_check_run("tests", SHA, conclusion="neutral")
    commit = repo.get_commit(SHA)
    runs = commit.get_check_runs()
    assert runs.totalCount == 2
    assert sorted(r.name for r in runs) == ["lint", "tests"]
    assert [r.status for r in commit.get_check_runs(check_name="lint")] == ["in_progress"]
    assert commit.get_check_runs(check_name="lint", filter="all").totalCount == 2
    assert [r.name for r in commit.get_check_runs(status="completed")] == ["tests"]
    suite = repo.get_check_suite(first.check_suite.id)
    assert (suite.head_sha, suite.head_branch, suite.status) == (SHA, "fix", "in_progress")
    assert suite.app.id == first.app.id
    assert [s.id for s in commit.get_check_suites()] == [suite.id]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"status": "completed"}, '"conclusion" wasn\'t supplied'),
        ({"status": "done"}, "'properties/status'"),
        ({"conclusion": "great"}, "'properties/conclusion'"),
        ({"output": {"title": "T", "summary": "s" * 65536}}, "65535"),
        ({"output": {"title": "T", "summary": "ok", "text": "t" * 65536}}, "65535"),
        ({"output": {"title": "T"}}, '"summary" wasn\'t supplied'),
        ({"output": {"title": "T", "summary": "s", "annotations": [annotation(i) for i in range(51)]}}, "50"),
        (
            {
                "output": {
                    "title": "T",
                    "summary": "s",
                    "annotations": [{**annotation(1), "annotation_level": "x"}],
                }
            },
            "x",
        ),
        ({"actions": [{"label": "a", "description": "b", "identifier": "c"}] * 4}, "at most 3"),
    ],
)
def test_github_validation_answers_422(repo, fields, fragment):
    with pytest.raises(GithubException) as invalid:
        repo.create_check_run("bad", SHA, **fields)
    assert invalid.value.status == 422
    assert invalid.value.data["message"].startswith("Invalid request.")
    assert fragment in invalid.value.data["message"]


def test_updates_are_validated_too_and_leave_the_run_alone(repo):
    run = repo.create_check_run("partial", SHA)
    with pytest.raises(GithubException) as invalid:
        run.edit(output={"title": "T", "summary": "s", "annotations": [annotation(i) for i in range(51)]})
    assert invalid.value.status == 422
    with pytest.raises(GithubException):
        run.edit(status="completed")
    assert repo.get_check_run(run.id).output.annotations_count == 0


def test_only_an_app_may_write_checks(world, repo):
    personal = world.client(Auth.Token(world.owner_token)).get_repo("octo-org/hpc-code")
    with pytest.raises(GithubException) as refused:
        personal.create_check_run("by hand", SHA)
    assert refused.value.status == 403
    assert refused.value.data["message"] == "You must authenticate via a GitHub App."
    run = repo.create_check_run("by the app", SHA)
    assert personal.get_check_run(run.id).name == "by the app"  # but anyone with read access may look


def test_rerun_clicks_send_check_run_and_check_suite_webhooks(world, repo):
    run = repo.create_check_run("firecrest-ci / cpu", SHA, conclusion="failure")
    state = world.gh.state
    delivery = state.rerequest_check_run(run.id, sender="alice")
    assert delivery is not None
    assert delivery.ok
    payload = world.receiver.events("check_run")[-1]
    assert payload["action"] == "rerequested"
    assert payload["check_run"]["id"] == run.id
    assert payload["check_run"]["conclusion"] == "failure"
    assert payload["check_run"]["check_suite"]["head_sha"] == SHA
    assert payload["check_run"]["app"]["id"] == world.app_id
    assert payload["repository"]["full_name"] == "octo-org/hpc-code"
    assert payload["organization"]["login"] == "octo-org"
    assert payload["sender"]["login"] == "alice"
    inst_id = payload["installation"]["id"]
    assert inst_id == state.installation_for(world.app_id, state.find_repo("octo-org/hpc-code")).id

    state.rerequest_check_suite(run.check_suite.id, sender="alice")
    suite_payload = world.receiver.events("check_suite")[-1]
    assert suite_payload["action"] == "rerequested"
    assert suite_payload["check_suite"]["id"] == run.check_suite.id
    assert suite_payload["check_suite"]["conclusion"] == "failure"
    assert suite_payload["installation"]["id"] == inst_id

    state.request_check_run_action(run.id, "retry", sender="alice")
    assert world.receiver.events("check_run")[-1]["requested_action"] == {"identifier": "retry"}
    # The App itself may ask GitHub to re-run the suite (PyGithub's CheckSuite.rerequest).
    assert repo.get_check_suite(run.check_suite.id).rerequest()
    assert world.receiver.events("check_suite")[-1]["sender"]["login"] == "firecrest-ci[bot]"
