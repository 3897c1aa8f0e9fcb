"""Serve the sandbox on loopback in a background thread (tests, demo, benchmarks).

`run_sandbox(config)` is the way in: a werkzeug threaded server on a free
port; leaving the block stops the server and kills every job still running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.firecrest.app import create_app
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.state import Sandbox


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens, its credentials, and its live state."""

    url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    root: Path
    config: SandboxConfig
    state: Sandbox
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def env(self) -> dict[str, str]:
        """The four variables the runner reads, pointing at this sandbox."""
        return {
            "FIRECREST_URL": self.url,
            "AUTH_TOKEN_URL": self.token_url,
            "FIRECREST_CLIENT_ID": self.client_id,
            "FIRECREST_CLIENT_SECRET": self.client_secret,
        }

    def stop(self) -> None:
        """Stop serving, then kill running jobs; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
        self.state.shutdown()


#: The name the project's brief uses for a running sandbox.
RunningSandbox = SandboxHandle


class QuietHandler(WSGIRequestHandler):
    """No access log: the runner's own output is what the demo and tests show."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


def start_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> SandboxHandle:
    """Start serving now; the caller must `stop()` the handle."""
    config.root.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    state: Sandbox = app.extensions["sandbox"]
    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    except OSError:
        state.shutdown()
        raise
    thread = threading.Thread(target=server.serve_forever, name="firecrest-sandbox", daemon=True)
    thread.start()
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - a comparison
    base = f"http://{shown_host}:{server.server_port}"
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


@contextmanager
def run_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> Iterator[SandboxHandle]:
    """Serve `config` for the duration of the block."""
    handle = start_sandbox(config, host, port)
    try:
        yield handle
    finally:
        handle.stop()
