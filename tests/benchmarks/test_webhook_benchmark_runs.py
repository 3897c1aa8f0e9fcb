"""`make bench-webhooks` keeps working: a two-second run of the very benchmark, through nginx,
must accept every delivery, lose nothing, time nothing out and print its figures. (Issue 12's
migration once broke it unnoticed: a new table referred to `runs` and its TRUNCATE failed.)
The figures themselves are not judged here: timing belongs to the benchmark, not to a test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_webhook_benchmark_runs_through_the_front_and_loses_nothing():
    command = ["-m", "benchmarks.webhook_ack", "--seconds", "2", "--warm-up", "1", "--workers", "2"]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^throughput\s+\d+ req/s$", out, re.M)
    assert re.search(r"^lost\s+0 ", out, re.M) and re.search(r"^socket errors\s+0 ", out, re.M)
    assert re.search(r"^PostgreSQL\s+fsync=(on|off)$", out, re.M)
    assert "| nginx (1 worker) -> gunicorn 2 workers (sync) | 16 |" in out
