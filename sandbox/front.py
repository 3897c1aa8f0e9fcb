"""Debian's nginx in front of the middleware, with the deployment's own configuration.

The middleware's gunicorn runs sync workers, which a slow client can hold; the documented
deployment puts a buffering nginx in front (deploy/nginx/). Tests and `make bench-webhooks`
run that very configuration: `Front` renders deploy/nginx/templates/firecrest-ci.conf.template
for a given upstream (one gunicorn, or several: one `server` line each) and a free loopback port,
with templates/firecrest-ci-tls.conf.template too when given a certificate, links
deploy/nginx/snippets beside it, and runs
nginx as a child process with its own prefix, pid file, logs and temporary directories, so
nothing under /etc/nginx or /var is read or written.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from sandbox.demo_loop import free_port
from sandbox.servers import LOOPBACK, _let_user_reach, _log_tail

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "nginx"
TEMPLATE = DEPLOY / "templates" / "firecrest-ci.conf.template"
TLS_TEMPLATE = DEPLOY / "templates" / "firecrest-ci-tls.conf.template"
SNIPPETS = DEPLOY / "snippets"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
#: The template's placeholders, `${NAME}` or `$NAME`, as envsubst fills them.
_PLACEHOLDER = re.compile(r"\$(?:\{(FIRECREST_CI_\w+)\}|(FIRECREST_CI_\w+))")
#: Fronts started and not yet stopped: stopped at interpreter exit, like sandbox.servers does.
_RUNNING: set[Front] = set()


def nginx_binary() -> str:
    """Debian installs nginx in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx; scripts/services.sh does)")
    return found


def render(upstream: str | Sequence[str], listen: str) -> str:
    """The deployment template with its two placeholders filled; nginx's own `$vars` stay.
    Several upstreams (web replicas) get one `server` line each, as an operator would add them."""
    servers = [upstream] if isinstance(upstream, str) else list(upstream)
    text = fill_template(TEMPLATE, {"FIRECREST_CI_UPSTREAM": servers[0], "FIRECREST_CI_LISTEN": listen})
    first = f"    server {servers[0]};\n"
    if first not in text:
        raise ValueError(f"{TEMPLATE} has no `server ${{FIRECREST_CI_UPSTREAM}};` line to add replicas after")
    return text.replace(first, "".join(f"    server {server};\n" for server in servers), 1)


def render_tls(listen: str, certificate: Path, key: Path) -> str:
    """The TLS template for a certificate and its key (PEM files)."""
    values = {
        "FIRECREST_CI_TLS_LISTEN": listen,
        "FIRECREST_CI_TLS_CERTIFICATE": str(certificate),
        "FIRECREST_CI_TLS_CERTIFICATE_KEY": str(key),
    }
    return fill_template(TLS_TEMPLATE, values)


def fill_template(template: Path, values: dict[str, str]) -> str:
    """envsubst restricted to FIRECREST_CI_* names, refusing a placeholder without a value."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"{template} has a placeholder ${{{name}}} that is not filled")
        return values[name]

    return _PLACEHOLDER.sub(fill, template.read_text())


def _worker_user() -> tuple[str, str] | None:
    """nginx's worker user and group when we are root (www-data on Debian), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("www-data", "nobody"):
        with contextlib.suppress(KeyError):
            user = pwd.getpwnam(name)
            return name, grp.getgrgid(user.pw_gid).gr_name
    raise RuntimeError("neither www-data nor nobody exists to run nginx's workers as")


class Front:
    """nginx on a free loopback port in front of `upstream` (host:port), in a directory of its own.

    The directory (a fresh one under the system temporary directory unless given) holds
    conf/nginx.conf (a minimal main file), conf/conf.d/firecrest-ci.conf (the rendered template),
    conf/snippets (a link to deploy/nginx/snippets), the pid file, error.log and the temporary
    directories for buffered bodies. As root, the workers run as www-data and are given the
    permissions they need to reach those temporary directories.
    """

    def __init__(
        self,
        upstream: str | Sequence[str],
        directory: Path | None = None,
        *,
        workers: int = 1,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.upstream = upstream
        self.workers = workers
        #: (certificate, key): also serve HTTPS on `tls_port` through the TLS template.
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="firecrest-ci-nginx-")).resolve()
        self.conf = self.directory / "conf" / "nginx.conf"
        self.site = self.directory / "conf" / "conf.d" / "firecrest-ci.conf"
        self.log = self.directory / "error.log"
        self.pid_file = self.directory / "nginx.pid"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this front serves no TLS")
        return f"https://{LOOPBACK}:{self.tls_port}"

    @property
    def pid(self) -> int | None:
        """The master's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def write_config(self) -> Path:
        """Lay out the configuration and return the main file (also what `check()` tests)."""
        self.site.parent.mkdir(parents=True, exist_ok=True)
        snippets = self.conf.parent / "snippets"
        if not snippets.exists():
            snippets.symlink_to(SNIPPETS, target_is_directory=True)
        self.site.write_text(render(self.upstream, f"{LOOPBACK}:{self.port}"))
        includes = ["    include conf.d/firecrest-ci.conf;"]
        if self.tls is not None:
            tls_site = self.site.with_name("firecrest-ci-tls.conf")
            tls_site.write_text(render_tls(f"{LOOPBACK}:{self.tls_port}", *self.tls))
            includes.append(f"    include conf.d/{tls_site.name};")
        temp = self.directory / "temp"
        temp.mkdir(exist_ok=True)
        user = _worker_user()
        lines = [
            f"worker_processes {self.workers};",
            f"pid {self.pid_file};",
            f"error_log {self.log} warn;",
            "daemon off;",
            *([f"user {user[0]} {user[1]};"] if user else []),
            "events { worker_connections 4096; }",
            "http {",
            *(
                f"    {kind}_temp_path {temp / kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            *includes,
            "}",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        if user is not None:  # the workers write buffered bodies under temp/
            worker = pwd.getpwnam(user[0])
            os.chown(temp, worker.pw_uid, worker.pw_gid)
            _let_user_reach(temp, worker)
        return self.conf

    def _command(self, *extra: str) -> list[str]:
        # -e: the error log from the first line on, not the compiled-in /var/log/nginx/error.log.
        return [nginx_binary(), "-p", str(self.directory), "-c", str(self.conf), "-e", str(self.log), *extra]

    def check(self) -> str:
        """`nginx -t` on the configuration; returns its report, raises with it when it fails."""
        self.write_config()
        done = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30, check=False)
        report = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise RuntimeError(f"nginx -t failed for {self.conf}:\n{report}")
        return report

    def start(self) -> None:
        """Start nginx and wait until it answers on its port; a no-op when already running."""
        if self.running:
            return
        self.write_config()
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a forced stop reaches the workers too
            )
        self._process = process
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening(process.pid):
            status = process.poll()
            if status is not None or time.monotonic() > deadline:
                what = f"exited with status {status}" if status is not None else "did not answer"
                message = f"nginx for {self.url} {what} while starting; {_log_tail(self.log)}"
                self.stop()
                raise RuntimeError(message)
            time.sleep(0.02)

    def _listening(self, pid: int) -> bool:
        """Our master wrote its pid and the port takes connections (not someone else's server)."""
        try:
            if int(self.pid_file.read_text().strip()) != pid:
                return False
        except (OSError, ValueError):
            return False
        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex((LOOPBACK, self.port)) == 0

    def stop(self) -> None:
        """Fast shutdown (SIGTERM: open connections are closed, slow clients are not waited for),
        then SIGKILL to the process group if it hangs; removes its own directory; idempotent."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            self._process = None
        _RUNNING.discard(self)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    for front in list(_RUNNING):
        with contextlib.suppress(Exception):  # best effort: nothing is left to report to
            front.stop()
