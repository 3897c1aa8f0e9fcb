"""Throwaway Redis and PostgreSQL servers that one test owns and may stop, crash and restart.

Fault-injection tests and benchmarks of the middleware take the broker or the database away
mid-run. Doing that to the shared services of `make test` (scripts/services.sh) would break
every other test, so each test starts its own server in its own directory, on a free loopback
port that is kept across restarts: URLs already handed to the code under test stay valid.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.demo_loop import free_port

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds a server gets to answer before start() gives up
STOP_TIMEOUT = 10.0  # seconds a graceful stop gets before it is an error (Redis: a SIGKILL)
PG_USER = "postgres"  # the cluster's superuser and, when we are root, the OS user it runs as
StopMode = Literal["fast", "immediate"]

# Servers started and not yet stopped: killed at interpreter exit so that a test which fails
# between start() and stop() does not leave a redis-server or a postmaster behind.
_RUNNING: set[RedisServer | PostgresCluster] = set()


def _log_tail(path: Path, lines: int = 20) -> str:
    """The end of a server's log, for error messages: the reason a server died is usually there."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {path}:\n{tail}" if tail else f"(empty log {path})"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((LOOPBACK, port)) == 0


class RedisServer:
    """A redis-server on a free loopback port, in its own directory.

    It runs as a child process (not daemonized), so a crash is a plain SIGKILL and the exit is
    observed with wait(), without pid files. Its stdout and stderr are the log, which also
    catches the start-up errors Redis prints before it would open a log file of its own.
    """

    def __init__(self, directory: Path, *, persistence: bool = False) -> None:
        self.directory = Path(directory).resolve()
        self.persistence = persistence
        self.port = free_port()
        self.log = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start and wait until this very process answers; a no-op when already running."""
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        aof = ["yes", "--appendfsync", "everysec"] if self.persistence else ["no"]
        args = [
            binary,
            *("--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.directory)),
            *("--daemonize", "no", "--logfile", "", "--save", ""),
            *("--appendonly", *aof),
        ]
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        self._process = process
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_as(process.pid):
            status = process.poll()
            if status is not None:
                self._forget()
                raise RuntimeError(
                    f"redis-server for {self.url()} exited with status {status} while starting; "
                    f"{_log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(
                    f"redis-server for {self.url()} did not answer within {START_TIMEOUT:.0f} s; "
                    f"{_log_tail(self.log)}"
                )
            time.sleep(0.01)

    def _client(self, timeout: float) -> redis.Redis:
        """A client that never retries: redis-py's default retries would re-send SHUTDOWN and
        turn a refused connection into seconds of back-off."""
        return redis.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _answers_as(self, pid: int) -> bool:
        """Answered by our process (INFO's process_id): a server already on the port is not ours."""
        client = self._client(timeout=0.25)
        try:
            info = client.info("server")
            return int(info["process_id"]) == pid
        except redis.RedisError:  # refused, or LOADING while it replays its AOF
            return False
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        """SHUTDOWN NOSAVE (SIGKILL with kill=True, or when Redis does not exit in time); idempotent.

        Returns once the process has exited, so its port is closed. With persistence, SHUTDOWN
        still flushes the append-only file, so the data survives a stop.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                self._shutdown_nosave()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def _shutdown_nosave(self) -> None:
        client = self._client(timeout=2.0)
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:  # no answer (e.g. a paused server): stop()'s wait escalates to SIGKILL
            pass
        finally:
            client.close()

    def _forget(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL: an abrupt crash, nothing flushed beyond what Redis already wrote."""
        self.stop(kill=True)

    def restart(self, down_for: float = 0.0, *, kill: bool = False) -> None:
        """Stop (or crash), stay down for `down_for` seconds, start again on the same port."""
        self.stop(kill=kill)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _pg_bin() -> Path:
    """Debian's versioned directory (the newest), else PATH: the same search as scripts/services.sh."""
    candidates = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    candidates.sort(key=lambda bin_dir: int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0)
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's initdb was not found (Debian: apt-get install postgresql)")
    return Path(initdb).parent


def _let_user_reach(directory: Path, user: pwd.struct_passwd) -> None:
    """Give `user` search (x, not read) permission on the ancestors that deny it.

    PostgreSQL refuses to run as root, so as root the cluster runs as `postgres`, which must be
    able to walk to its data directory; pytest's tmp_path sits under 0700 directories of root.
    """
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for path in (directory, *directory.parents):
        info = os.stat(path)
        if info.st_uid == user.pw_uid or (info.st_gid in groups and info.st_mode & stat.S_IXGRP):
            continue
        if not info.st_mode & stat.S_IXOTH:
            os.chmod(path, stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


class PostgresCluster:
    """A PostgreSQL cluster of its own (initdb), on a free loopback port, fsync off.

    The directory holds `data/` (the cluster), `socket/` (its Unix socket) and `postgres.log`.
    fsync is off because these clusters are thrown away and only processes crash, never the OS:
    an immediate stop still loses no committed row, and tests stay fast.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.data = self.directory / "data"
        self.sockets = self.directory / "socket"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        socket_path = self.sockets / f".s.PGSQL.{self.port}"
        if len(os.fsencode(socket_path)) > 107:  # sun_path is 108 bytes with the NUL
            raise ValueError(f"{socket_path} is too long for a Unix socket: use a shorter directory")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@{LOOPBACK}:{self.port}/{quote(database, safe='')}"

    @property
    def running(self) -> bool:
        """Whether the postmaster in postmaster.pid is alive (what `pg_ctl status` checks)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def start(self) -> None:
        """initdb on the first start, then `pg_ctl start -w`; a no-op when already running."""
        if self.running:
            return
        bin_dir = _pg_bin()
        self._prepare_directories()
        if not (self.data / "PG_VERSION").is_file():
            self._run(
                "initdb",
                bin_dir / "initdb",
                *("-D", self.data, "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"),
            )
        options = ["-p", str(self.port), "-k", str(self.sockets)]
        options += ["-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off"]
        _RUNNING.add(self)
        try:
            self._run(
                "pg_ctl start",
                bin_dir / "pg_ctl",
                *("-D", self.data, "-l", self.log, "-w", "-t", str(int(START_TIMEOUT))),
                *("-o", shlex.join(options), "start"),  # pg_ctl hands -o to a shell
            )
        except RuntimeError:
            if self.running:  # it came up too late: do not leave it behind
                self._pg_ctl_stop("immediate")
            _RUNNING.discard(self)
            raise

    def _prepare_directories(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_USER)
            for path in (self.directory, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            _let_user_reach(self.directory, user)

    def _run(self, what: str, *command: str | Path) -> None:
        """Run a PostgreSQL binary, as the postgres user when we are root; errors carry its output."""
        as_pg = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        args = [*as_pg, *map(str, command)]
        try:
            result = subprocess.run(
                args,
                capture_output=True,
                text=True,
                cwd=self.directory,
                timeout=START_TIMEOUT + STOP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(
                f"{what} for the cluster in {self.directory} (port {self.port}) hung; {_log_tail(self.log)}"
            ) from error
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise RuntimeError(
                f"{what} for the cluster in {self.directory} (port {self.port}) failed with status "
                f"{result.returncode}: {output}\n{_log_tail(self.log)}"
            )

    def stop(self, mode: StopMode = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`, then wait until the port is closed; idempotent.

        fast rolls back open transactions and checkpoints; immediate is a crash of the server's
        processes (the next start replays the WAL).
        """
        if mode not in ("fast", "immediate"):
            raise ValueError(f"stop mode must be 'fast' or 'immediate', not {mode!r}")
        if self.running:
            self._pg_ctl_stop(mode)
        _RUNNING.discard(self)

    def _pg_ctl_stop(self, mode: StopMode) -> None:
        try:
            self._run(
                f"pg_ctl stop -m {mode}",
                _pg_bin() / "pg_ctl",
                *("-D", self.data, "-m", mode, "-w", "-t", str(int(STOP_TIMEOUT)), "stop"),
            )
        except RuntimeError:
            if self.running:
                raise
        # postmaster.pid goes before the postmaster has quite exited: wait for its listening socket.
        deadline = time.monotonic() + STOP_TIMEOUT
        while _port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"port {self.port} still accepts connections after the cluster in {self.directory} "
                    f"stopped; {_log_tail(self.log)}"
                )
            time.sleep(0.01)

    def restart(self, down_for: float = 0.0, mode: StopMode = "fast") -> None:
        """Stop with `mode`, stay down for `down_for` seconds, start again on the same port."""
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` and return its URL (each test or benchmark run gets a fresh one)."""
        with psycopg.connect(
            host=LOOPBACK, port=self.port, user=PG_USER, dbname="postgres", autocommit=True, connect_timeout=5
        ) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop("fast")


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):  # best effort: nothing is left to report to
            if isinstance(server, RedisServer):
                server.kill()
            else:
                server.stop("immediate")
