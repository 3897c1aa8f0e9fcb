"""`python -m sandbox.firecrest` / `firecrest-sandbox`: serve the local FirecREST v2 target."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import start_sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local FirecREST v2-compatible target (a stand-in).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--root", type=Path, help="state directory (default: a new temp dir)")
    parser.add_argument("--system", action="append", help="system name; repeatable (default: cluster)")
    parser.add_argument("--client-id", default="firecrest-ci-sandbox")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument("--token-lifetime", type=float, default=300.0)
    parser.add_argument("--pending-seconds", type=float, default=0.3)
    parser.add_argument("--fault-5xx-rate", type=float, default=0.0)
    parser.add_argument("--fault-429-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--env-file", type=Path, help="write the four FIRECREST_* variables here once listening"
    )
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="firecrest-sandbox-"))
    config = SandboxConfig(
        root=root,
        systems=tuple(args.system or ["cluster"]),
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        pending_seconds=args.pending_seconds,
        fault_5xx_rate=args.fault_5xx_rate,
        fault_429_rate=args.fault_429_rate,
        fault_seed=args.seed,
    )
    handle = start_sandbox(config, args.host, args.port)
    lines = [f"{k}={v}" for k, v in handle.env().items()]
    if args.env_file:
        args.env_file.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    print(f"# sandbox FirecREST (a local stand-in) serving {handle.url}, state in {root}", flush=True)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
