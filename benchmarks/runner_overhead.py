"""`make bench`: the runner's overhead and FirecREST load, against a 10 s polling baseline.

For jobs of 2 s, 5 s and 30 s (and 10 minutes with --long) it runs the real
`ci-runner` CLI (live log on) and the baseline (`baseline_poller.py`, what
published CI examples do) on the local sandbox, and prints:

- overhead: the step's wall time minus the job's own run time (from the
  scheduler's start/end), median over the repeats;
- FirecREST requests per job and per job-minute, token requests excluded
  (counted by the sandbox itself).

Targets: overhead <= 1.5 s median for the 5 s job; <= 12 requests per
job-minute for jobs of 10 minutes or more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import SandboxHandle, start_sandbox

ROOT = Path(__file__).resolve().parent.parent


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
    if who == "ci-runner":
        command = [sys.executable, "-m", "ci_runner", "run", "--system", "cluster", "--staging", "none"]
        command += ["--command", job_command(seconds)]
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


def new_sandbox(root: Path) -> SandboxHandle:
    return start_sandbox(
        SandboxConfig(root=root, systems=("cluster",), pending_seconds=0.1, token_lifetime=3600)
    )


def summarise(samples: list[Sample]) -> list[dict[str, object]]:
    rows = []
    for who in ("ci-runner", "baseline (10 s polls)"):
        for seconds in sorted({s.job_seconds for s in samples}):
            group = [s for s in samples if s.who == who and s.job_seconds == seconds]
            if not group:
                continue
            minutes = statistics.median(s.runtime for s in group) / 60
            requests = statistics.median(s.requests for s in group)
            rows.append(
                {
                    "runner": who,
                    "job": f"{seconds} s",
                    "runs": len(group),
                    "overhead_median_s": round(statistics.median(s.overhead for s in group), 2),
                    "overhead_max_s": round(max(s.overhead for s in group), 2),
                    "requests_per_job": requests,
                    "requests_per_job_minute": round(requests / minutes, 1) if minutes else None,
                    "all_passed": all(s.passed for s in group),
                }
            )
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    header = (
        f"{'runner':<24}{'job':>8}{'runs':>6}{'overhead med':>14}{'max':>8}"
        f"{'req/job':>9}{'req/job-min':>13}{'passed':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['runner']!s:<24}{r['job']!s:>8}{r['runs']!s:>6}{r['overhead_median_s']!s:>13}s"
            f"{r['overhead_max_s']!s:>7}s{r['requests_per_job']!s:>9}{r['requests_per_job_minute']!s:>13}"
            f"{'yes' if r['all_passed'] else 'NO':>8}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per short job length (default 3)")
    parser.add_argument("--long", action="store_true", help="also run a 10-minute job (takes 10 minutes)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-bench-") as tmp:
        root = Path(tmp)
        sandbox = new_sandbox(root / "hpc")
        try:
            plan = [(2, args.repeat), (5, args.repeat), (30, max(1, args.repeat // 2))]
            for seconds, repeats in plan:
                for who in ("ci-runner", "baseline"):
                    for _ in range(repeats):
                        sample = run_once(sandbox, who, seconds)
                        sample.who = "ci-runner" if who == "ci-runner" else "baseline (10 s polls)"
                        samples.append(sample)
                        print(
                            f"  {sample.who:<22} {seconds:>4} s job: wall {sample.wall:6.2f} s, "
                            f"overhead {sample.overhead:5.2f} s, {sample.requests} requests",
                            flush=True,
                        )
        finally:
            sandbox.stop()
        if args.long:
            # Two sandboxes so each side's request count is its own; both run at once.
            long_samples: list[Sample] = []

            def long_run(who: str, label: str) -> None:
                box = new_sandbox(root / f"hpc-{who}")
                try:
                    sample = run_once(box, who, 600)
                    sample.who = label
                    long_samples.append(sample)
                finally:
                    box.stop()

            threads = [
                threading.Thread(target=long_run, args=("ci-runner", "ci-runner")),
                threading.Thread(target=long_run, args=("baseline", "baseline (10 s polls)")),
            ]
            print("  running the 10-minute jobs (both runners at once)...", flush=True)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            samples += long_samples
    rows = summarise(samples)
    print()
    print_table(rows)
    print()
    print(
        "schedule: status polls at 0.5 s growing 25 % per poll to a 10 s cap; log reads of new bytes "
        "only, within a budget of 15 + 10 requests per minute"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "samples": [asdict(s) for s in samples]}, indent=2))
    return 0 if all(r["all_passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
