"""The middleware image's HEALTHCHECK (Dockerfile.middleware), also what deploy/compose.yaml runs.

    python /usr/local/lib/firecrest-ci/healthcheck.py [auto|web|worker]

auto (the default) finds the container's role from its processes: gunicorn is the web tier, a
Celery worker is a worker, anything else (a one-shot such as `migrate`) has nothing to check.
web: GET /readyz on the port of BIND answers 200 (gunicorn up, PostgreSQL and Redis reachable).
worker: the worker's Celery node answers a control ping through the broker within the timeout;
the node is WORKER_NODE if set, else the `-n`/`--hostname` of the worker's command line
(Celery's %h, %n and %d expanded), else Celery's default celery@<hostname>.
Exit status 0 when healthy, 1 with one line on stderr when not. tests/deploy/test_scale_out.py
runs it against a real gunicorn and real workers; in a container it is only validated.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 5.0


def _commands() -> list[list[str]]:
    """The command lines of the processes we can see (a container sees only its own)."""
    found: list[list[str]] = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        found.append([w.decode(errors="replace") for w in words if w])
    return found


def _is_worker(command: list[str]) -> bool:
    return any(Path(w).name == "celery" for w in command[:3]) and "worker" in command


def role_of(commands: list[list[str]]) -> str:
    """web, worker or other, from the command lines of the container's processes."""
    if any(any(Path(w).name == "gunicorn" for w in c[:3]) for c in commands):
        return "web"
    if any(_is_worker(c) for c in commands):
        return "worker"
    return "other"


def node_name(command: list[str], hostname: str) -> str:
    """The Celery node a worker command line names, with Celery's %h, %n and %d expanded."""
    name = ""
    for index, word in enumerate(command):
        if word in ("-n", "--hostname") and index + 1 < len(command):
            name = command[index + 1]
        elif word.startswith("--hostname="):
            name = word.split("=", 1)[1]
    if not name:
        name = "celery@%h"
    elif "@" not in name:
        name = f"celery@{name}"
    short, _, domain = hostname.partition(".")
    return name.replace("%h", hostname).replace("%n", short).replace("%d", domain)


def check_web() -> str | None:
    port = os.environ.get("BIND", "127.0.0.1:8080").rsplit(":", 1)[-1]
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        return f"{url}: {error}"
    return None if status == 200 else f"{url} answered {status}"


def check_worker(commands: list[list[str]]) -> str | None:
    from celery import Celery

    from middleware.settings import Settings, SettingsError

    node = os.environ.get("WORKER_NODE") or node_name(
        next((c for c in commands if _is_worker(c)), []), socket.gethostname()
    )
    try:
        broker = Settings().resolved().broker_url
    except SettingsError as error:
        return f"settings: {error}"
    app = Celery("firecrest-ci-healthcheck", broker=broker)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": TIMEOUT}
    try:
        replies = app.control.ping(destination=[node], timeout=TIMEOUT)
    except Exception as error:  # noqa: BLE001 - any failure to ask means not healthy
        return f"could not ask {node}: {type(error).__name__}: {error}"
    finally:
        app.close()
    return None if any(node in reply for reply in replies) else f"{node} did not answer a ping"


def main(argv: list[str]) -> int:
    wanted = argv[1] if len(argv) > 1 else "auto"
    if wanted not in ("auto", "web", "worker"):
        print(f"usage: {argv[0]} [auto|web|worker]", file=sys.stderr)
        return 2
    commands = _commands()
    role = role_of(commands) if wanted == "auto" else wanted
    if role == "web":
        problem = check_web()
    elif role == "worker":
        problem = check_worker(commands)
    else:
        return 0  # a one-shot (migrate, check, ...): nothing long-running to check
    if problem is not None:
        print(f"firecrest-ci {role} unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
