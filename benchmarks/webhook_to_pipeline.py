"""Time from a signed push webhook to the GitLab pipeline being created, p50 over 50 pushes.

The production path: gunicorn and a Celery worker on real Redis and PostgreSQL
(`scripts/services.sh start`), the GitLab, GitHub and FirecREST stand-ins on
loopback. Each push is a new commit; the clock stops when the stand-in has a
pipeline for that commit. Target: p50 <= 2 s.

    python -m benchmarks.webhook_to_pipeline [--pushes 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.webhook_ack import services
from sandbox.demo_loop import (
    GH_TOKEN,
    Source,
    deliver,
    free_port,
    middleware_env,
    register,
    start_middleware,
    wait_healthy,
)
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.github.server import run_github
from sandbox.gitlab.server import run_gitlab


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=50)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    urls = services()
    admin_url = urls["TEST_POSTGRES_URL"].replace("postgresql+psycopg://", "postgresql://")
    db_name = f"fci_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{db_name}"')
    redis_url = urls["TEST_REDIS_URL"].rsplit("/", 1)[0] + "/7"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    latencies: list[float] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="firecrest-ci-w2p-") as tmp_name,
            run_sandbox(SandboxConfig(root=Path(tmp_name) / "hpc", pending_seconds=0.1)) as firecrest,
            run_gitlab(Path(tmp_name) / "gitlab") as gl,
            run_github() as gh,
        ):
            tmp = Path(tmp_name)
            gh.state.add_user("bench-bot", GH_TOKEN)
            gh.state.add_repo("demo-org/hpc-code")
            source = Source(tmp)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            database = urls["TEST_POSTGRES_URL"].rsplit("/", 1)[0] + f"/{db_name}"
            env = middleware_env(tmp, port, firecrest, gl, gh, DATABASE_URL=database, REDIS_URL=redis_url)
            processes = start_middleware(tmp, env)
            try:
                wait_healthy(url, tmp / "middleware.log")
                repo = register(url, source.url, firecrest)
                created: dict[str, float] = {}
                app_pipelines = gl_pipelines(gl)  # the stand-in's own table: no polling through its API
                for number in range(args.pushes):
                    sha = source.commit(f"#!/bin/bash\necho push {number}\n", f"push {number}")
                    t0 = time.perf_counter()
                    deliver(url, repo["webhook_secret"], sha).raise_for_status()
                    deadline = t0 + 30
                    while time.perf_counter() < deadline:
                        if any(p.sha == sha for p in list(app_pipelines.values())):
                            created[sha] = time.perf_counter() - t0
                            break
                        time.sleep(0.005)
                    else:
                        raise TimeoutError(f"no pipeline for push {number}")
                    latencies.append(created[sha])
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=20)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"webhook -> pipeline created over {len(ordered)} pushes "
        "(Redis, PostgreSQL, gunicorn, 1 Celery worker)"
    )
    print(
        f"p50 {p50:.3f} s   p95 {p95:.3f} s   min {ordered[0]:.3f} s   max {ordered[-1]:.3f} s   "
        "(target p50 <= 2 s)"
    )
    return 0 if p50 <= 2.0 else 1


def gl_pipelines(gl: object) -> dict[int, Any]:
    """The stand-in's pipeline table (in this process)."""
    server = gl._server  # type: ignore[attr-defined]
    app = server.app
    found: dict[int, Any] = app.extensions["gitlab_pipelines"]
    return found


if __name__ == "__main__":
    sys.exit(main())
