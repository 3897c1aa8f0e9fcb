"""Nothing accepted is ever lost: the deployed middleware (gunicorn, a Celery worker, its own
redis-server without persistence and its own PostgreSQL cluster) under faults injected in the
middle of a burst of signed pushes, one delivery per commit. Each scenario counts the accepted
deliveries, their final outcomes, the pipelines and the statuses, and must show 0 lost and
0 duplicated (see sandbox.deployment for the definitions)."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox.deployment import FINAL, Deployment, deployed, redeliver, send_burst, tally, wait_for

BRANCHES = [f"b{i}" for i in range(10)]


@pytest.fixture
def deployment(tmp_path):
    with deployed(tmp_path) as running:
        yield running


def finish(deployment: Deployment, burst, timeout: float = 150):
    redeliver(deployment, burst)
    waited = deployment.wait_drained({burst.sha_of[d] for d in burst.accepted}, timeout)
    result = tally(deployment, burst)
    print(f"\n{result.row()}; drained in {waited:.1f} s")
    return result


def test_redis_restarted_mid_burst_loses_nothing(deployment):
    commits = deployment.commits(300, BRANCHES)

    in_broker = []

    def restart_redis(index: int) -> None:
        if index == 100:
            in_broker.append(deployment.queued())
            deployment.redis.restart(down_for=2.0)  # no persistence: every queued message is gone

    burst = send_burst(deployment, commits, rate=60, during=restart_redis)
    result = finish(deployment, burst)
    print(f"messages in Redis when it went down: {in_broker[0]}")
    assert in_broker[0] > 0  # the restart really dropped work
    assert result.accepted == 300
    assert (result.lost, result.duplicated) == (0, 0), result.row()


def in_background(action) -> None:
    threading.Thread(target=action, daemon=True).start()


def test_postgresql_stopped_mid_burst_with_a_backlog_loses_nothing(deployment):
    commits = deployment.commits(200, BRANCHES)
    backlog = []

    def stop_postgres(index: int) -> None:
        if index == 80:
            backlog.append(sum(1 for r in deployment.runs() if r["state"] not in FINAL))
            in_background(lambda: deployment.postgres.restart(down_for=6.5, mode="immediate"))

    started = time.monotonic()
    burst = send_burst(deployment, commits, rate=40, during=stop_postgres)
    refused = sum(1 for status in burst.answers.values() if not 200 <= status < 300)
    print(
        f"burst sent in {time.monotonic() - started:.1f} s; not final when PostgreSQL stopped: {backlog[0]}"
    )
    print(f"deliveries refused while it was away (then redelivered): {refused}")
    result = finish(deployment, burst)
    assert backlog[0] > 0 and refused > 0  # the worker had work, and the outage was felt
    assert result.accepted == 200  # every refused delivery was accepted when redelivered
    assert (result.lost, result.duplicated) == (0, 0), result.row()


def test_worker_killed_inside_a_mirror_push_and_inside_a_pipeline_create(deployment):
    state = deployment.gitlab.state
    commits = deployment.commits(40, BRANCHES[:4])
    kills = []

    def kill_inside(index: int) -> None:
        if index == 10:
            state.push_delay = 3.0
            wait_for(lambda: state.pushes_in_progress > 0, 30, "the worker inside a mirror push")
            deployment.kill_worker()
            kills.append("push")
            state.push_delay = 0.0
            deployment.start_worker()
        if index == 25:
            state.create_delay = 3.0
            wait_for(lambda: state.creates_in_progress > 0, 30, "the worker inside a pipeline create")
            deployment.kill_worker()  # GitLab goes on and makes the pipeline; the worker never hears of it
            kills.append("create")
            state.create_delay = 0.0
            deployment.start_worker()

    burst = send_burst(deployment, commits, rate=10, during=kill_inside)
    result = finish(deployment, burst)
    assert kills == ["push", "create"]
    assert result.accepted == 40
    assert (result.lost, result.duplicated) == (0, 0), result.row()


def test_gitlab_answering_502_after_creating_pipelines_makes_no_second_one(deployment):
    state = deployment.gitlab.state
    state.fail_after_create = 5
    commits = deployment.commits(40, BRANCHES)
    burst = send_burst(deployment, commits, rate=10)
    result = finish(deployment, burst)
    assert state.fail_after_create == 0  # five answers were really lost
    assert result.accepted == 40 and result.pipelines >= 10
    assert (result.lost, result.duplicated) == (0, 0), result.row()


def test_github_down_longer_than_any_retry_still_gets_every_status(deployment):
    github = deployment.github.state
    commits = deployment.commits(40, BRANCHES)

    def take_github_down(index: int) -> None:
        if index == 5:
            github.down_until = time.time() + 45

    burst = send_burst(deployment, commits, rate=10, during=take_github_down)
    wait_for(lambda: time.time() > github.down_until, 60, "GitHub to come back")
    refused = sum(1 for r in github.requests if r["time"] < github.down_until and r["method"] == "POST")
    result = finish(deployment, burst)
    assert refused > 0  # statuses really were refused while it was down
    assert result.accepted == 40
    assert (result.lost, result.duplicated) == (0, 0), result.row()


@pytest.mark.parametrize("provider", ["gitlab", "bitbucket"])
def test_redis_restarted_and_postgresql_stopped_lose_nothing_from_other_sources(tmp_path, provider):
    """The same promises for deliveries from a GitLab or Bitbucket source: their webhooks take the
    same intake, and their statuses go back to their own stand-in. Redis restarts without
    persistence after 40 pushes; PostgreSQL stops for 6.5 s after 80, so some deliveries are
    refused and redelivered."""
    with deployed(tmp_path, provider=provider) as deployment:
        commits = deployment.commits(120, BRANCHES)
        in_broker = []

        def faults(index: int) -> None:
            if index == 40:
                in_broker.append(deployment.queued())
                deployment.redis.restart(down_for=2.0)
            if index == 80:
                in_background(lambda: deployment.postgres.restart(down_for=6.5, mode="immediate"))

        burst = send_burst(deployment, commits, rate=40, during=faults)
        refused = sum(1 for status in burst.answers.values() if not 200 <= status < 300)
        result = finish(deployment, burst)
        print(f"refused while PostgreSQL was away (then redelivered): {refused}")
        assert refused > 0  # the outage was felt
        assert result.accepted == 120
        assert (result.lost, result.duplicated) == (0, 0), result.row()
        assert result.statuses >= 120  # every commit's status reached the source's stand-in
