"""`python -m sandbox.firecrest` / `firecrest-sandbox`: serve the local FirecREST v2 stand-in.

Prints the four FIRECREST_* variables once listening (and writes them to
`--env-file`, so a parent process can wait for that file); SIGTERM or SIGINT
stop the server and kill every job still running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import start_sandbox


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="firecrest-sandbox",
        description="A local FirecREST v2-compatible target (a stand-in running jobs as local processes).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--root", type=Path, help="state directory (default: a new temporary directory)")
    parser.add_argument("--system", action="append", help="system name; repeatable (default: cluster)")
    parser.add_argument("--username", default="fireuser")
    parser.add_argument("--client-id", default="firecrest-ci-sandbox")
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("FIRECREST_SANDBOX_SECRET", "sandbox-secret"),
        help="default: $FIRECREST_SANDBOX_SECRET or sandbox-secret",
    )
    parser.add_argument("--token-lifetime", type=float, default=300.0, help="seconds")
    parser.add_argument("--pending-seconds", type=float, default=0.3)
    parser.add_argument("--job-invisible-seconds", type=float, default=0.0)
    parser.add_argument("--metadata-ttl", type=float, default=300.0)
    parser.add_argument(
        "--placeholder-seconds",
        type=float,
        default=0.0,
        help="how long a job that ran under a second is listed as Slurm's placeholder `allocation` record",
    )
    parser.add_argument("--fault-5xx-rate", type=float, default=0.0)
    parser.add_argument("--fault-429-rate", type=float, default=0.0)
    parser.add_argument("--fault-timeout-rate", type=float, default=0.0)
    parser.add_argument("--fault-timeout-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, help="fault injection seed (same seed, same faults)")
    parser.add_argument(
        "--no-data-transfer",
        action="store_true",
        help="no staged-transfer backend (data_transfer: null), like a centre without S3",
    )
    parser.add_argument(
        "--env-file", type=Path, help="write the four FIRECREST_* variables here once listening"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="firecrest-sandbox-"))
    config = SandboxConfig(
        root=root,
        systems=tuple(args.system or ["cluster"]),
        username=args.username,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        pending_seconds=args.pending_seconds,
        job_invisible_seconds=args.job_invisible_seconds,
        metadata_ttl=args.metadata_ttl,
        placeholder_seconds=args.placeholder_seconds,
        fault_5xx_rate=args.fault_5xx_rate,
        fault_429_rate=args.fault_429_rate,
        fault_timeout_rate=args.fault_timeout_rate,
        fault_timeout_seconds=args.fault_timeout_seconds,
        fault_seed=args.seed,
        data_transfer=None if args.no_data_transfer else "s3",
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    handle = start_sandbox(config, args.host, args.port)
    try:
        lines = [f"{key}={value}" for key, value in handle.env().items()]
        if args.env_file:
            # Write then rename, so a reader polling for the file never sees half of it.
            partial = args.env_file.with_name(args.env_file.name + ".partial")
            partial.write_text("\n".join(lines) + "\n")
            partial.replace(args.env_file)
        print("\n".join(lines), flush=True)
        print(f"# FirecREST sandbox (a local stand-in) at {handle.url}, state in {root}", flush=True)
        stop.wait()
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
