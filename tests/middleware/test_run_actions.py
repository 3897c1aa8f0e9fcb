"""Cancel, retry and restart (middleware.runs.actions) on runs that really run in the GitLab
stand-in: what each does to the run and the pipeline, who is recorded, and each refusal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
from sqlalchemy import select

from middleware.models import Run, RunAction
from middleware.runs import actions, steps
from middleware.runs.actions import ActionRefused, RunControl
from tests.middleware.runs_world import RunsWorld, runs_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[RunsWorld]:
    with runs_world(tmp_path) as made:
        yield made


def recorded(world: RunsWorld, run_id: int) -> list[tuple[str, str, int | None, str]]:
    with world.svc.db.session() as session:
        rows = session.scalars(select(RunAction).where(RunAction.run_id == run_id).order_by(RunAction.id))
        return [(a.action, a.actor, a.new_run_id, a.detail) for a in rows]


def test_cancel_stops_the_pipeline_ends_the_run_once_and_reports_it(world: RunsWorld) -> None:
    sha = world.commit("sleep 30")
    run_id = world.trigger(sha)
    run = world.start(run_id)
    assert run.gitlab_pipeline_id is not None
    outcome = actions.cancel(world.control, run_id, "alice")
    assert outcome.message == f"run {run_id} canceled"
    assert world.pipeline_status(run.gitlab_pipeline_id, "canceled") == "canceled"
    after = world.run(run_id)
    assert (after.state, after.error) == ("canceled", "canceled by alice")
    assert after.next_check_at is not None  # due, so the final status goes out at once
    assert world.wait_finished(run_id) == "canceled"
    assert world.run(run_id).error == "canceled by alice"  # the pipeline's own end did not overwrite it
    assert world.statuses(sha)[-1]["description"] == "canceled by alice"
    assert recorded(world, run_id) == [("cancel", "alice", None, "")]
    with pytest.raises(ActionRefused) as again:
        actions.cancel(world.control, run_id, "bob")
    assert again.value.status == 409
    assert "already ended canceled" in again.value.message
    assert recorded(world, run_id) == [("cancel", "alice", None, "")]  # a refusal records nothing


def test_cancel_before_the_pipeline_exists_ends_the_run_and_starts_nothing(world: RunsWorld) -> None:
    sha = world.commit("echo never")
    run_id = world.trigger(sha)
    actions.cancel(world.control, run_id, "alice")
    assert world.run(run_id).state == "canceled"
    assert world.wait_finished(run_id) == "canceled"
    assert world.pipelines(sha) == []


def test_cancel_finds_a_pipeline_made_while_the_run_ended(world: RunsWorld) -> None:
    """A worker created the pipeline but had not recorded it when the run was cancelled."""
    sha = world.commit("sleep 30")
    run_id = world.trigger(sha)
    steps.start(world.bench, run_id)
    pipeline_id = world.run(run_id).gitlab_pipeline_id
    with world.svc.db.session() as session:  # as if the worker had not recorded it yet
        session.get(Run, run_id).gitlab_pipeline_id = None  # type: ignore[union-attr]
        session.get(Run, run_id).state = "mirrored"  # type: ignore[union-attr]
    actions.cancel(world.control, run_id, "alice")
    assert world.pipeline_status(pipeline_id, "canceled") == "canceled"


def test_cancel_when_the_pipeline_already_ended_leaves_the_end_to_the_workers(world: RunsWorld) -> None:
    sha = world.commit("exit 0")
    run_id = world.trigger(sha)
    run = world.start(run_id)
    assert world.pipeline_status(run.gitlab_pipeline_id, "success") == "success"
    with pytest.raises(ActionRefused) as refused:
        actions.cancel(world.control, run_id, "alice")
    assert refused.value.status == 409 and "already ended success" in refused.value.message
    assert world.wait_finished(run_id) == "success"


def test_an_unreachable_gitlab_changes_nothing(world: RunsWorld) -> None:
    sha = world.commit("sleep 30")
    run_id = world.trigger(sha)
    world.start(run_id)
    dead = RunControl(
        world.svc.db, gitlab.Gitlab("http://127.0.0.1:9", private_token="glpat-x"), "firecrest-ci"
    )
    with pytest.raises(ActionRefused) as refused:
        actions.cancel(dead, run_id, "alice")
    assert refused.value.status == 502
    assert "could not be reached" in refused.value.message and "nothing was changed" in refused.value.message
    assert world.run(run_id).state in ("pending", "running")
    assert recorded(world, run_id) == []
    actions.cancel(world.control, run_id, "alice")  # tidy: no job left sleeping


def test_restart_makes_a_new_attempt_with_its_own_pipeline(world: RunsWorld) -> None:
    sha = world.commit("echo once more")
    first = world.trigger(sha)
    world.start(first)
    assert world.wait_finished(first) == "success"
    outcome = actions.restart(world.control, first, "trusty")
    assert outcome.new_run_id is not None and outcome.new_run_id != first
    new = world.run(outcome.new_run_id)
    assert (new.attempt, new.requested_by, new.state, new.sha) == (2, "trusty", "queued", sha)
    assert world.wait_finished(outcome.new_run_id) == "success"
    pipelines = {p.id for p in world.pipelines(sha)}
    assert pipelines == {
        world.run(first).gitlab_pipeline_id,
        world.run(outcome.new_run_id).gitlab_pipeline_id,
    }
    assert len(pipelines) == 2
    assert recorded(world, first) == [("restart", "trusty", outcome.new_run_id, "")]


def test_restart_and_retry_of_a_run_still_running_are_refused(world: RunsWorld) -> None:
    sha = world.commit("sleep 30")
    run_id = world.trigger(sha)
    with pytest.raises(ActionRefused) as queued:
        actions.restart(world.control, run_id, "alice")
    assert queued.value.status == 409 and "still queued" in queued.value.message
    with pytest.raises(ActionRefused) as no_pipeline:
        actions.retry(world.control, run_id, "alice")
    assert no_pipeline.value.status == 409 and "no GitLab pipeline" in no_pipeline.value.message
    world.start(run_id)
    with pytest.raises(ActionRefused) as running:
        actions.restart(world.control, run_id, "alice")
    assert "cancel it first" in running.value.message
    with pytest.raises(ActionRefused) as retried:
        actions.retry(world.control, run_id, "alice")
    assert "once it has ended" in retried.value.message
    actions.cancel(world.control, run_id, "alice")
    assert recorded(world, run_id) == [("cancel", "alice", None, "")]


def test_retry_of_a_successful_run_is_refused(world: RunsWorld) -> None:
    sha = world.commit("exit 0")
    run_id = world.trigger(sha)
    world.start(run_id)
    assert world.wait_finished(run_id) == "success"
    with pytest.raises(ActionRefused) as refused:
        actions.retry(world.control, run_id, "alice")
    assert "no job failed" in refused.value.message


def test_an_unknown_run_is_404(world: RunsWorld) -> None:
    for action in actions.ACTIONS.values():
        with pytest.raises(ActionRefused) as refused:
            action(world.control, 424242, "alice")
        assert refused.value.status == 404


def test_retry_runs_the_failed_jobs_again_and_follows_the_run(world: RunsWorld, tmp_path: Path) -> None:
    marker = tmp_path / "second-time"
    sha = world.commit(f"if [ -e {marker} ]; then echo passed; else touch {marker}; exit 4; fi")
    run_id = world.trigger(sha)
    run = world.start(run_id)
    assert world.wait_finished(run_id) == "failed"
    outcome = actions.retry(world.control, run_id, "trusty")
    assert "retried" in outcome.message
    reopened = world.run(run_id)
    assert (reopened.state, reopened.finished_at, reopened.error) == ("pending", None, None)
    time.sleep(0.2)
    assert world.wait_finished(run_id) == "success"
    assert world.run(run_id).gitlab_pipeline_id == run.gitlab_pipeline_id  # the same pipeline
    assert [p.id for p in world.pipelines(sha)] == [run.gitlab_pipeline_id]
    states = [s["state"] for s in world.statuses(sha)]  # the retry's `pending` may be overtaken
    assert states[:2] == ["pending", "failure"] and states[-1] == "success"
    assert recorded(world, run_id) == [("retry", "trusty", None, "")]
