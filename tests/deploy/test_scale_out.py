"""Issue 13 §4, the scale-out shape: two gunicorn instances behind the nginx front of deploy/nginx
(one upstream server each) and two named Celery workers (prefetch 1) on one Redis and one
PostgreSQL, all on loopback (sandbox.deployment). A burst of signed pushes gives exactly one
pipeline per commit and one final status each; both gunicorn instances answered deliveries and
both workers ran tasks. The image's health check (deploy/image/healthcheck.py) is run against
these very processes: healthy while they run, unhealthy once a worker is gone."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from sandbox.deployment import deployed, send_burst, tally

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = ROOT / "deploy" / "image" / "healthcheck.py"
COMMITS = 16
#: Celery logs each task a worker ran at INFO: "Task <name>[<id>] succeeded in ...".
SUCCEEDED = re.compile(r"Task (\S+)\[[0-9a-f-]+\] succeeded in")


def healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def deliveries_answered(connection_url: str) -> int:
    with psycopg.connect(connection_url.replace("+psycopg", ""), autocommit=True) as connection:
        return int(connection.execute("SELECT count(*) FROM deliveries").fetchone()[0])


def test_two_webs_behind_nginx_and_two_workers_share_a_burst(tmp_path):
    # One gunicorn worker per instance: the two instances are the point, and CI machines are small.
    with deployed(tmp_path, webs=2, workers=2, front=True, WEB_CONCURRENCY="1") as deployment:
        assert deployment.front is not None and deployment.url == deployment.front.url
        assert len(deployment.binds) == 2
        upstreams = re.findall(r"^\s*server (\S+);", deployment.front.site.read_text(), flags=re.M)
        assert upstreams == deployment.binds

        # Every worker is healthy by the image's own check (a Celery ping to its node).
        host = socket.gethostname()
        for name in deployment.named_workers:
            done = healthcheck({**deployment.env, "WORKER_NODE": f"{name}@{host}"}, "worker")
            assert done.returncode == 0, done.stderr
        for bind in deployment.binds:
            done = healthcheck({**deployment.env, "BIND": bind}, "web")
            assert done.returncode == 0, done.stderr

        branches = [f"b-scale-{n}" for n in range(COMMITS)]  # one commit per branch: none supersedes
        commits = deployment.commits(COMMITS, branches)
        burst = send_burst(deployment, commits, rate=50, threads=8)
        assert burst.codes() == Counter({202: COMMITS}), burst.codes()
        waited = deployment.wait_drained({sha for _, sha in commits}, timeout=60)
        counted = tally(deployment, burst)
        assert waited < 60, counted.row()

        # Exactly one pipeline per commit and one final status each, nothing lost or doubled.
        assert counted.lost == 0 and counted.duplicated == 0, counted.row()
        assert counted.pipelines == COMMITS, counted.row()
        assert counted.final == COMMITS and counted.errors == 0, counted.row()
        pipelines_per_sha = Counter(p.sha for p in deployment.gitlab.pipelines.values())
        assert set(pipelines_per_sha) == {sha for _, sha in commits}
        assert set(pipelines_per_sha.values()) == {1}

        # nginx spread the deliveries over both gunicorn instances (each logs its own requests).
        assert deliveries_answered(deployment.env["DATABASE_URL"]) >= COMMITS

        # Each worker ran part of the work, told apart by node name and log.
        ran = {name: SUCCEEDED.findall(deployment.log(f"worker-{name}")) for name in deployment.named_workers}
        assert set(ran) == {"w1", "w2"}
        for name, tasks in ran.items():
            assert tasks, f"worker {name} ran no task: {deployment.log(f'worker-{name}')[-2000:]}"
            assert f"{name}@{host}" in deployment.log(f"worker-{name}")

        # A worker gone is unhealthy by the same check, the other still healthy.
        gone = deployment.named_workers["w2"]
        gone.kill()
        gone.wait()
        done = healthcheck({**deployment.env, "WORKER_NODE": f"w2@{host}"}, "worker")
        assert done.returncode == 1 and "w2@" in done.stderr, done.stderr
        done = healthcheck({**deployment.env, "WORKER_NODE": f"w1@{host}"}, "worker")
        assert done.returncode == 0, done.stderr


def test_healthcheck_refuses_an_unknown_role_and_a_web_that_is_not_there():
    done = healthcheck(dict(os.environ), "beat")
    assert done.returncode == 2 and "usage" in done.stderr
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    done = healthcheck({**os.environ, "BIND": f"0.0.0.0:{port}"}, "web")
    assert done.returncode == 1 and "web unhealthy" in done.stderr
