"""Webhook acknowledgement figures: the documented deployment on this machine (nginx from
deploy/nginx in front of gunicorn, real Redis and PostgreSQL), signed push deliveries from wrk
(Lua, HMAC-SHA256 in `signed_push.lua`) on loopback.

Prints throughput, p50/p99 latency, and deliveries accepted (202) against
the runs recorded with them and handed to Redis by the worker's dispatcher,
with PostgreSQL's `fsync` setting (off on the test services: commits are not flushed).

    python -m benchmarks.webhook_ack [--seconds 20] [--connections 16] [--workers 4] [--direct]

--direct sends straight to gunicorn, without the front. Needs `wrk` and `nginx` (Debian
packages) and the services `scripts/services.sh start` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from sandbox.front import Front

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN = "bench-admin-token-0123456789"


def services() -> dict[str, str]:
    done = subprocess.run(
        [str(ROOT / "scripts" / "services.sh"), "start"], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """A process and its children (gunicorn's or nginx's workers)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return [pid, *kids]


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    clock = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / clock, sum(ticks) / clock


class CpuMeter:
    """CPU used during the load by each tier, so figures taken on a busy machine still say
    what a delivery costs: gunicorn, nginx, the PostgreSQL backends of the benchmark's
    database, and wrk (read from its rusage); `others` is what the rest of the machine used
    meanwhile (other people's tests), which tells a quiet run from a disturbed one."""

    def __init__(self, admin_url: str, db_name: str, web: int, front: int | None) -> None:
        self.admin_url, self.db_name, self.web, self.front = admin_url, db_name, web, front
        self.start: dict[str, dict[int, float]] = {}

    def _snapshot(self) -> dict[str, dict[int, float]]:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            backends = [
                row[0]
                for row in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db_name,)
                ).fetchall()
            ]
        tiers = {"gunicorn": family(self.web), "postgres": backends}
        if self.front is not None:
            tiers["nginx"] = family(self.front)
        return {tier: {pid: cpu_seconds(pid) for pid in pids} for tier, pids in tiers.items()}

    def begin(self) -> None:
        self.start = self._snapshot()
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.machine = machine_busy()

    def end(self) -> dict[str, float]:
        now = self._snapshot()
        used = {
            tier: sum(cpu - self.start.get(tier, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for tier, pids in now.items()
        }
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        used["wrk"] = (children.ru_utime - self.children.ru_utime) + (
            children.ru_stime - self.children.ru_stime
        )
        busy, total = machine_busy()
        self.others = max(0.0, busy - self.machine[0] - sum(used.values()))
        #: Cores' worth of CPU the rest of the machine used during the load.
        self.others_cores = self.others / max(total - self.machine[1], 1e-9) * (os.cpu_count() or 1)
        return used


def push_template(full_name: str) -> str:
    payload = json.loads((ROOT / "data" / "webhooks" / "github" / "push" / "payload.json").read_text())
    payload["repository"]["full_name"] = full_name
    payload.update(ref="refs/heads/main", after="@@SHA@@", deleted=False)
    return json.dumps(payload, separators=(",", ":"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument(
        "--web-threads", type=int, default=1, help="threads per gunicorn worker (WEB_THREADS; >1: gthread)"
    )
    parser.add_argument("--direct", action="store_true", help="send straight to gunicorn, without nginx")
    parser.add_argument("--unix", action="store_true", help="nginx reaches gunicorn on a Unix socket")
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=3,
        help="seconds of load first, not counted (every worker's first requests)",
    )
    parser.add_argument("--pool", type=int, default=300, help="distinct signed bodies per wrk thread")
    parser.add_argument(
        "--worker-during-load",
        action="store_true",
        help="run the Celery worker while wrk sends (default: start it after: the web tier's figures)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="measure this many times, each on fresh processes, and print every row and the median",
    )
    args = parser.parse_args()
    if args.runs > 1:
        return repeat(args.runs)
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    env_services = services()
    admin_url = env_services["TEST_POSTGRES_URL"].replace("postgresql+psycopg://", "postgresql://")
    db_name = f"fci_bench_{uuid.uuid4().hex[:8]}"
    redis_url = env_services["TEST_REDIS_URL"].rsplit("/", 1)[0] + "/5"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{db_name}"')
    database_url = env_services["TEST_POSTGRES_URL"].rsplit("/", 1)[0] + f"/{db_name}"
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="firecrest-ci-webhook-bench-"))
    tmp.chmod(0o755)  # nginx's workers (another user) reach the Unix socket in it
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MIDDLEWARE_SECRET_KEY": "bench-secret-key-0123456789abcdefghijklmnop",
        "ADMIN_TOKEN": ADMIN,
        "VERIFY_GITHUB_TOKENS": "0",
        # Configured but away: a worker refuses to start without GITLAB_URL; runs wait, as measured.
        "GITLAB_URL": "http://127.0.0.1:9",
        "BIND": f"unix:{tmp}/web.sock" if args.unix else f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(args.workers),
        "WEB_THREADS": str(args.web_threads),
        "DATA_DIR": str(tmp),
    }
    # As with several web replicas: the schema is migrated once beforehand, not in gunicorn's
    # master, which then imports no database driver before its workers fork.
    migrate = [str(BIN / "firecrest-ci-middleware"), "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True)
    env["MIGRATE_ON_START"] = "0"
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "middleware" / "gunicorn.conf.py"), "middleware.wsgi:app"],
        cwd=ROOT, env=env, stdout=open(tmp / "gunicorn.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    worker_command = [str(BIN / "celery"), "-A", "middleware.worker:celery", "worker", "--pool=solo"]
    worker_command += ["-Q", "firecrest-ci", "--loglevel=ERROR"]

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(worker_command),
            cwd=ROOT,
            env=env,
            stdout=open(tmp / "worker.log", "a"),
            stderr=subprocess.STDOUT,
        )

    worker = start_worker() if args.worker_during_load else None
    front: Front | None = None
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                transport = httpx.HTTPTransport(uds=f"{tmp}/web.sock") if args.unix else None
                with httpx.Client(transport=transport, timeout=1) as probe:
                    ready = probe.get(f"{url}/healthz").status_code == 200
                if ready:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        if not args.direct:
            upstream = f"unix:{tmp}/web.sock" if args.unix else f"127.0.0.1:{port}"
            front = Front(upstream, workers=args.nginx_workers)
            front.start()
            url = front.url
        headers = {"Authorization": f"Bearer {ADMIN}"}
        repo = httpx.post(
            f"{url}/api/repositories",
            headers=headers,
            json={
                "full_name": "bench/hpc-code",
                "clone_url": "https://github.com/bench/hpc-code.git",
                "notification_token": "t",
                "firecrest_client_id": "c",
                "firecrest_client_secret": "s",
                "branches": ["main"],
            },
        ).json()
        httpx.post(
            f"{url}/api/repositories/{repo['id']}/pipelines",
            headers=headers,
            json={"name": "cpu", "entrypoint": "ci.yml", "system": "cluster"},
        ).raise_for_status()
        lua = (ROOT / "benchmarks" / "signed_push.lua").read_text()
        lua = lua.replace("@@SECRET@@", repo["webhook_secret"]).replace("@@POOL@@", str(args.pool))
        lua = lua.replace("@@TEMPLATE@@", push_template("bench/hpc-code"))
        script, warm_up_script = tmp / "signed_push.lua", tmp / "warm_up.lua"
        script.write_text(lua.replace("@@RUN@@", "m"))
        warm_up_script.write_text(lua.replace("@@RUN@@", "w"))
        command = [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        if args.warm_up > 0:
            warm_up = [*command[:3], f"-d{args.warm_up}s", *command[4:6], str(warm_up_script), url]
            subprocess.run(warm_up, capture_output=True, check=True)
            time.sleep(1)  # requests wrk left in flight land before the tables are emptied
            with psycopg.connect(admin_url.rsplit("/", 1)[0] + f"/{db_name}", autocommit=True) as connection:
                # The measured load starts afresh (CASCADE: run_actions refer to runs).
                connection.execute("TRUNCATE deliveries, runs, outbox CASCADE")
        print("running:", " ".join(command[:-3]), "...", flush=True)
        meter = CpuMeter(admin_url, db_name, web.pid, front.pid if front is not None else None)
        meter.begin()
        result = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        cpu = meter.end()
        print("\n".join(line for line in result.splitlines() if not line.startswith("BENCH ")))
        drain_started = time.time()
        if worker is None:
            worker = start_worker()
        figures = dict(re.findall(r"BENCH (\S+)=(\S+)", result))
        # wrk leaves requests slower than its timeout out of the latency figures: count them.
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", result)
        socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
        rate = re.search(r"Requests/sec:\s+([\d.]+)", result)
        accepted = int(figures.get("accepted", 0))
        # Runs are written with their delivery; let the worker's dispatcher hand them all out.
        distinct = min(int(figures.get("requests", 0) or 0), args.threads * args.pool)
        deadline = time.time() + 60
        with psycopg.connect(admin_url.rsplit("/", 1)[0] + f"/{db_name}") as connection:

            def one(query: str) -> tuple[Any, ...]:
                row = connection.execute(query).fetchone()
                assert row is not None
                return row

            while time.time() < deadline:
                runs, handed = one("SELECT count(*), count(*) FILTER (WHERE ticket > 0) FROM runs")
                if runs >= distinct and handed == runs:
                    break
                time.sleep(0.5)
            deliveries = one("SELECT count(*) FROM deliveries")[0]
            fsync = one("SHOW fsync")[0]
        tier = f"gunicorn {args.workers} workers" + (
            f" x {args.web_threads} threads (gthread)" if args.web_threads > 1 else " (sync)"
        )
        setup = tier if args.direct else f"nginx ({args.nginx_workers} worker) -> {tier}"
        print()
        print(f"{setup}, wrk {args.threads} threads x {args.connections} connections, {args.seconds} s")
        print(f"throughput      {float(rate.group(1)) if rate else 0:.0f} req/s")
        print(f"latency p50     {float(figures.get('p50_ms', 0)):.2f} ms")
        print(f"latency p99     {float(figures.get('p99_ms', 0)):.2f} ms")
        print(
            f"sent            {figures.get('requests')} "
            f"(202 accepted: {accepted}, other: {figures.get('other')})"
        )
        print(f"stored          {deliveries} deliveries")
        drained = time.time() - drain_started
        print(f"runs recorded   {runs} (distinct commits sent: {distinct})")
        print(f"handed to Redis {handed} by the worker's dispatcher, {drained:.1f} s after the load")
        when = "during the load" if args.worker_during_load else "started after the load (web tier figures)"
        print(f"celery worker   {when}")
        print(f"lost            {distinct - runs} (distinct commits accepted without a run)")
        print(f"socket errors   {socket_errors} (connect, read, write or over wrk's 2 s timeout)")
        print(f"PostgreSQL      fsync={fsync}")
        sent = max(int(figures.get("requests", 0) or 0), 1)
        per = {tier: seconds / sent * 1e6 for tier, seconds in cpu.items()}
        print(
            "CPU / delivery  "
            + ", ".join(f"{tier} {micros:.0f} us" for tier, micros in per.items())
            + f"; total {sum(per.values()):.0f} us (what {os.cpu_count()} idle cores could carry: "
            f"{(os.cpu_count() or 1) / max(sum(per.values()), 1) * 1e6:.0f}/s)"
        )
        print(f"other processes {meter.others_cores:.2f} of {os.cpu_count()} cores busy during the load")
        print()
        print("| set-up | connections | req/s | p50 | p99 | accepted | lost | PostgreSQL fsync |")
        print(
            f"| {setup} | {args.connections} | {float(rate.group(1)) if rate else 0:.0f} "
            f"| {float(figures.get('p50_ms', 0)):.1f} ms | {float(figures.get('p99_ms', 0)):.1f} ms "
            f"| {accepted} | {distinct - runs} | {fsync} |"
        )
        complete = runs == distinct and handed == runs and figures.get("other") == "0"
        return 0 if complete and socket_errors == 0 else 1
    finally:
        if front is not None:
            front.stop()
        for process in (worker, web):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def repeat(runs: int) -> int:
    """Run the whole benchmark `runs` times in a row and summarise. The CPU of a shared machine
    speeds up and slows down by itself (the unchanged PostgreSQL tier's CPU per delivery swings
    with it), so one run alone does not say what the code does."""
    own = sys.argv[1:]
    if "--runs" in own:  # `--runs N` given as two words
        del own[own.index("--runs") : own.index("--runs") + 2]
    own = [a for a in own if not a.startswith("--runs=")]
    rows: list[str] = []
    rates: list[float] = []
    p99s: list[float] = []
    failed = 0
    for number in range(1, runs + 1):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.webhook_ack", *own], capture_output=True, text=True, cwd=ROOT
        )
        failed += done.returncode != 0
        row = next(
            (line for line in done.stdout.splitlines() if line.startswith("| ") and "set-up" not in line), ""
        )
        cpu = next((line for line in done.stdout.splitlines() if line.startswith("CPU / delivery")), "")
        print(f"run {number}: {row or done.stderr.strip()[-300:]}\n       {cpu}", flush=True)
        if row:
            cells = [c.strip() for c in row.strip("|").split("|")]
            rows.append(row)
            rates.append(float(cells[2]))
            p99s.append(float(cells[4].split()[0]))
    print()
    print("| set-up | connections | req/s | p50 | p99 | accepted | lost | PostgreSQL fsync |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    if rates:
        print(
            f"\n{len(rates)} runs: median {statistics.median(rates):.0f} req/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}); p99 at most {max(p99s):.1f} ms; "
            f"runs that lost or refused anything: {failed}"
        )
    return 1 if failed or not rates else 0


if __name__ == "__main__":
    sys.exit(main())
