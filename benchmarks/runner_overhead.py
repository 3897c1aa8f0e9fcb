"""`make bench`: the runner's overhead and FirecREST load, against a 10 s polling baseline.

For jobs of 2 s, 5 s and 30 s (and 10 minutes with --long) it runs the real
`ci-runner` CLI (live log on) and the baseline (`baseline_poller.py`, what
published CI examples do) on the local sandbox, and prints, side by side:

- overhead: the step's wall time minus the job's own run time (from the
  scheduler's start/end), median over the repeats;
- FirecREST requests per job and per job-minute, token requests excluded
  (counted by the sandbox itself).

Targets (issue 9, section 8): overhead <= 1.5 s median for the 5 s and the
30 s jobs; <= 12 requests per job-minute for 10-minute jobs.

Then, not gated, the 5 s job on a real-server-shaped sandbox: every request
answered late (`--shaped-latency` s plus up to half as much again), tokens
too, and jobs pending `--shaped-pending` s. A real FirecREST v2 server
measured 1.89 s median overhead for a 5 s job with the runner of the time
(10 s capped polls); the default shape, 20-30 ms and 0.2 s, gives that
runner 1.9 s on the sandbox. `--shaped-latency 0.1 --shaped-pending 0.5`
is a slower, SSH-heavy centre.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from werkzeug.serving import make_server

from sandbox.firecrest.app import create_app
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import QuietHandler, SandboxHandle, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
RUNNER = "ci-runner"
BASELINE = "baseline (10 s polls)"
TARGET_OVERHEAD = 1.5
TARGET_PER_MINUTE = 12.0
#: The real-server shape: per-request latency (seconds; up to half as much again as jitter) and
#: how long jobs pend. Calibrated: the runner of the time gets the real server's 1.89 s with it.
SHAPED_LATENCY = 0.02
SHAPED_PENDING = 0.2
REAL_SERVER_OVERHEAD = 1.89


@dataclass
class Sample:
    who: str
    job_seconds: int
    wall: float
    runtime: float
    requests: int
    passed: bool

    @property
    def overhead(self) -> float:
        return self.wall - self.runtime


def job_command(seconds: int) -> str:
    """A job that prints a line a second, so the live log has something to stream."""
    return f"for i in $(seq {seconds}); do echo tick $i; sleep 1; done"


def run_once(sandbox: SandboxHandle, who: str, seconds: int) -> Sample:
    client = httpx.Client(base_url=sandbox.url, timeout=10)
    client.post("/_sandbox/stats/reset")
    before = {j["jobId"] for j in client.get("/_sandbox/jobs").json()["jobs"]}
    env = {
        **os.environ,
        **sandbox.env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    if who == RUNNER:
        command = [sys.executable, "-m", "ci_runner", "run", "--system", "cluster", "--staging", "none"]
    else:
        command = [sys.executable, "-m", "benchmarks.baseline_poller", "--system", "cluster"]
    command += ["--command", job_command(seconds)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    stats = client.get("/_sandbox/stats").json()
    jobs = [j for j in client.get("/_sandbox/jobs").json()["jobs"] if j["jobId"] not in before]
    client.close()
    job = jobs[-1]
    runtime = (job["end"] or 0) - (job["start"] or 0)
    return Sample(who, seconds, wall, runtime, int(stats["total"]), done.returncode == 0)


def new_sandbox(root: Path, *, pending: float = 0.1) -> SandboxHandle:
    return start_sandbox(
        SandboxConfig(root=root, systems=("cluster",), pending_seconds=pending, token_lifetime=3600)
    )


class Latency:
    """WSGI middleware: FirecREST and token requests answer late, as over a real network and SSH."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], delay: float, jitter: float, seed: int = 9
    ) -> None:
        self.app, self.delay, self.jitter = app, delay, jitter
        self.rng = random.Random(seed)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("PATH_INFO", "")).startswith("/_sandbox/"):
            time.sleep(self.delay + self.rng.uniform(0, self.jitter))
        return self.app(environ, start_response)


def shaped_sandbox(
    root: Path, latency: float = SHAPED_LATENCY, pending: float = SHAPED_PENDING
) -> SandboxHandle:
    """The sandbox behind `Latency`, with jobs pending like on a quiet real partition."""
    config = SandboxConfig(root=root, systems=("cluster",), pending_seconds=pending, token_lifetime=3600)
    config.root.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    state = app.extensions["sandbox"]
    app.wsgi_app = Latency(app.wsgi_app, latency, latency / 2)  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="shaped-sandbox", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    return SandboxHandle(
        url=base,
        token_url=f"{base}/auth/token",
        client_id=config.client_id,
        client_secret=config.client_secret,
        root=config.root,
        config=config,
        state=state,
        _server=server,
        _thread=thread,
    )


def summarise(samples: list[Sample]) -> list[dict[str, object]]:
    rows = []
    for who in (RUNNER, BASELINE):
        for seconds in sorted({s.job_seconds for s in samples}):
            group = [s for s in samples if s.who == who and s.job_seconds == seconds]
            if not group:
                continue
            minutes = statistics.median(s.runtime for s in group) / 60
            requests = statistics.median(s.requests for s in group)
            rows.append(
                {
                    "runner": who,
                    "job_seconds": seconds,
                    "runs": len(group),
                    "overhead_median_s": round(statistics.median(s.overhead for s in group), 2),
                    "overhead_max_s": round(max(s.overhead for s in group), 2),
                    "requests_per_job": requests,
                    "requests_per_job_minute": round(requests / minutes, 1) if minutes else None,
                    "all_passed": all(s.passed for s in group),
                }
            )
    return rows


def length(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def print_table(rows: list[dict[str, object]], title: str) -> None:
    """Runner and baseline side by side, one line per job length."""
    by = {(r["runner"], r["job_seconds"]): r for r in rows}
    print(title)
    header = (
        f"{'job':>7} {'runs':>5} | {'overhead median':^21} | {'requests per job':^19} | "
        f"{'requests per job-minute':^23} | {'passed':^6}"
    )
    sub = f"{'':>7} {'':>5} | {'ci-runner':>10}{'baseline':>11} | {'ci-runner':>10}{'baseline':>9} | "
    sub += f"{'ci-runner':>11}{'baseline':>12} |"
    print(header)
    print(sub)
    print("-" * len(header))

    def cell(row: dict[str, object] | None, key: str, unit: str = "") -> str:
        if row is None or row.get(key) is None:
            return "-"
        return f"{row[key]}{unit}"

    for seconds in sorted({int(str(r["job_seconds"])) for r in rows}):
        ours, base = by.get((RUNNER, seconds)), by.get((BASELINE, seconds))
        runs = (ours or base or {}).get("runs", "")
        passed = all(bool(r["all_passed"]) for r in (ours, base) if r)
        print(
            f"{length(seconds):>7} {runs!s:>5} | {cell(ours, 'overhead_median_s', ' s'):>10}"
            f"{cell(base, 'overhead_median_s', ' s'):>11} | {cell(ours, 'requests_per_job'):>10}"
            f"{cell(base, 'requests_per_job'):>9} | {cell(ours, 'requests_per_job_minute'):>11}"
            f"{cell(base, 'requests_per_job_minute'):>12} | {'yes' if passed else 'NO':^6}"
        )


def verdicts(rows: list[dict[str, object]]) -> list[str]:
    """The section 8 targets, each with its figure; a missing length says how to measure it."""
    ours = {int(str(r["job_seconds"])): r for r in rows if r["runner"] == RUNNER}
    lines = []
    for seconds in (5, 30):
        row = ours.get(seconds)
        if row:
            value = float(str(row["overhead_median_s"]))
            mark = "met" if value <= TARGET_OVERHEAD else "MISSED"
            lines.append(f"overhead <= {TARGET_OVERHEAD} s median, {seconds} s job: {value:.2f} s ({mark})")
    long = ours.get(600)
    if long and long["requests_per_job_minute"] is not None:
        value = float(str(long["requests_per_job_minute"]))
        mark = "met" if value <= TARGET_PER_MINUTE else "MISSED"
        lines.append(f"<= {TARGET_PER_MINUTE:g} requests per job-minute, 10 min job: {value:g} ({mark})")
    else:
        lines.append(f"<= {TARGET_PER_MINUTE:g} requests per job-minute, 10 min job: run with --long")
    return lines


def measure(sandbox: SandboxHandle, plan: list[tuple[int, int]], label: str = "") -> list[Sample]:
    samples = []
    for seconds, repeats in plan:
        for who in (RUNNER, BASELINE):
            for _ in range(repeats):
                sample = run_once(sandbox, who, seconds)
                samples.append(sample)
                print(
                    f"  {label}{sample.who:<22} {length(seconds):>6} job: wall {sample.wall:6.2f} s, "
                    f"overhead {sample.overhead:5.2f} s, {sample.requests} requests",
                    flush=True,
                )
    return samples


def long_runs(root: Path) -> list[Sample]:
    """The 10-minute jobs, both runners at once on their own sandboxes (own request counts)."""
    found: list[Sample] = []

    def one(who: str) -> None:
        box = new_sandbox(root / f"hpc-{who.split()[0]}")
        try:
            found.append(run_once(box, who, 600))
        finally:
            box.stop()

    threads = [threading.Thread(target=one, args=(who,)) for who in (RUNNER, BASELINE)]
    print("  running the 10-minute jobs (both runners at once)...", flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per short job length (default 3)")
    parser.add_argument("--long", action="store_true", help="also run a 10-minute job (takes 10 minutes)")
    parser.add_argument("--no-shaped", action="store_true", help="skip the real-server-shaped 5 s job")
    parser.add_argument("--shaped-latency", type=float, default=SHAPED_LATENCY, help="seconds per request")
    parser.add_argument("--shaped-pending", type=float, default=SHAPED_PENDING, help="seconds a job pends")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    samples: list[Sample] = []
    shaped: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-bench-") as tmp:
        root = Path(tmp)
        sandbox = new_sandbox(root / "hpc")
        try:
            samples += measure(sandbox, [(2, args.repeat), (5, args.repeat), (30, args.repeat)])
        finally:
            sandbox.stop()
        if args.long:
            samples += long_runs(root)
        if not args.no_shaped:
            box = shaped_sandbox(root / "hpc-shaped", args.shaped_latency, args.shaped_pending)
            try:
                shaped = measure(box, [(5, args.repeat)], label="shaped ")
            finally:
                box.stop()
    rows = summarise(samples)
    print()
    print_table(rows, "Section 8: the end of a job noticed (local sandbox, live log on, medians)")
    print()
    for line in verdicts(rows):
        print(f"  {line}")
    print(
        "\nschedule: status polls at 0.5 s growing 25 % to 10 s until the job runs; then log reads "
        "(which see the script's end marker) every 0.5 s, 0.1 s slower per 10 s, for 32 s, then 30 % "
        "slower per read to 15 s; status polls at 20 s doubling to 3 min watch for ends the marker "
        "cannot report; all within 70 + 4 requests per minute"
    )
    shaped_rows = summarise(shaped)
    if shaped_rows:
        print()
        print_table(
            shaped_rows,
            f"Real-server-shaped sandbox (not gated): {args.shaped_latency * 1000:.0f}-"
            f"{args.shaped_latency * 1500:.0f} ms per request, jobs pending {args.shaped_pending:g} s; "
            f"a real server measured {REAL_SERVER_OVERHEAD} s for the 5 s job with 10 s capped polls",
        )
    if args.json:
        payload = {
            "rows": rows,
            "shaped_rows": shaped_rows,
            "samples": [asdict(s) for s in samples + shaped],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0 if all(r["all_passed"] for r in rows + shaped_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
