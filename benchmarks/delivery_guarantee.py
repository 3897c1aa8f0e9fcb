"""The delivery guarantee at scale: the fault scenarios of tests/faults with >= 1,000 deliveries.

Each scenario deploys the middleware on its own redis-server (no persistence) and
PostgreSQL cluster (see sandbox.deployment), sends one signed push per commit over
ten branches, injects its fault in the middle of the burst, redelivers what was
refused, waits until everything accepted has drained, and prints one row: deliveries
accepted, final outcomes, pipelines created, statuses posted, lost, duplicated.

    python -m benchmarks.delivery_guarantee [--deliveries 1000] [--rate 60] [SCENARIO ...]

Scenarios: redis-restart (no persistence), redis-restart-aof, redis-away (90 s),
postgres-away (60 s), worker-kills, gitlab-502 (50 answers lost after the create,
10 % 5xx), github-away (120 s). Exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.deployment import Deployment, Tally, deployed, redeliver, send_burst, tally, wait_for

BRANCHES = [f"b{i}" for i in range(50)]  # more branches than the tests: more pipelines


def background(action: Callable[[], None]) -> None:
    threading.Thread(target=action, daemon=True).start()


def at(index: int, action: Callable[[], None]) -> Callable[[int], None]:
    def during(i: int) -> None:
        if i == index:
            action()

    return during


def redis_restart(d: Deployment, n: int) -> Callable[[int], None]:
    return at(n // 3, lambda: d.redis.restart(down_for=5))


def redis_away(d: Deployment, n: int) -> Callable[[int], None]:
    return at(n // 3, lambda: background(lambda: d.redis.restart(down_for=90)))


def postgres_away(d: Deployment, n: int) -> Callable[[int], None]:
    return at(n // 3, lambda: background(lambda: d.postgres.restart(down_for=60, mode="immediate")))


def worker_kills(d: Deployment, n: int) -> Callable[[int], None]:
    """A SIGKILL inside a push, one inside a create, then one every ~100 deliveries at random."""
    state = d.gitlab.state
    rng = random.Random(20261126)
    random_points = set(rng.sample(range(n // 10, n), k=max(1, n // 100)))

    def kill_at(marker: str, delay: str) -> None:
        setattr(state, delay, 3.0)
        try:
            wait_for(lambda: getattr(state, marker) > 0, 60, marker)
            d.kill_worker()
        finally:
            setattr(state, delay, 0.0)
        d.start_worker()

    def during(i: int) -> None:
        if i == n // 10:
            kill_at("pushes_in_progress", "push_delay")
        elif i == n // 5:
            kill_at("creates_in_progress", "create_delay")
        elif i in random_points:
            time.sleep(rng.uniform(0, 0.5))
            d.kill_worker()
            d.start_worker()

    return during


def gitlab_502(d: Deployment, n: int) -> Callable[[int], None]:
    def faults() -> None:
        d.gitlab.state.fail_after_create = 50
        d.gitlab.state.fault_5xx_rate = 0.1

    return at(n // 10, faults)


def github_away(d: Deployment, n: int) -> Callable[[int], None]:
    def down() -> None:
        d.github.state.down_until = time.time() + 120

    return at(n // 10, down)


SCENARIOS: dict[str, Callable[[Deployment, int], Callable[[int], None]]] = {
    "redis-restart": redis_restart,
    "redis-restart-aof": redis_restart,
    "redis-away": redis_away,
    "postgres-away": postgres_away,
    "worker-kills": worker_kills,
    "gitlab-502": gitlab_502,
    "github-away": github_away,
}


def run(name: str, deliveries: int, rate: float) -> tuple[Tally, float]:
    aof = name.endswith("-aof")
    with (
        tempfile.TemporaryDirectory(prefix=f"firecrest-ci-{name}-") as tmp,
        deployed(Path(tmp), persistence=aof) as d,
    ):
        commits = d.commits(deliveries, BRANCHES)
        started = time.monotonic()
        burst = send_burst(d, commits, rate=rate, during=SCENARIOS[name](d, deliveries))
        redeliver(d, burst, rounds=300, pause=1.0)  # waits out an outage that is still on
        d.gitlab.state.fault_5xx_rate = 0.0
        d.wait_drained({burst.sha_of[x] for x in burst.accepted}, timeout=900)
        elapsed = time.monotonic() - started
        return tally(d, burst), elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=60.0, help="deliveries per second")
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    header = (
        "| scenario | accepted | final outcomes | superseded | pipelines | statuses | lost | duplicated | s |"
    )
    rows = []
    failed = False
    for name in args.scenarios or list(SCENARIOS):
        print(f"running {name} with {args.deliveries} deliveries ...", flush=True)
        result, elapsed = run(name, args.deliveries, args.rate)
        print(f"  {result.row()}", flush=True)
        rows.append(
            f"| {name} | {result.accepted} | {result.final} | {result.superseded} | {result.pipelines} | "
            f"{result.statuses} | {result.lost} | {result.duplicated} | {elapsed:.0f} |"
        )
        failed = failed or result.lost > 0 or result.duplicated > 0 or result.accepted < args.deliveries
    print()
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
