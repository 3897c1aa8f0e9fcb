"""Serve the sandbox on loopback in a background thread (tests, demo, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.firecrest.app import Sandbox, create_app
from sandbox.firecrest.config import SandboxConfig


@dataclass
class SandboxHandle:
    url: str
    token_url: str
    client_id: str
    client_secret: str
    root: Path
    config: SandboxConfig
    state: Sandbox
    _server: BaseWSGIServer
    _thread: threading.Thread

    def env(self) -> dict[str, str]:
        """The four variables the runner reads, pointing at this sandbox."""
        return {
            "FIRECREST_URL": self.url,
            "AUTH_TOKEN_URL": self.token_url,
            "FIRECREST_CLIENT_ID": self.client_id,
            "FIRECREST_CLIENT_SECRET": self.client_secret,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
        self.state.jobs.shutdown()


class QuietHandler(WSGIRequestHandler):
    """No access log: the runner's own output is what the demo and tests show."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


def start_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> SandboxHandle:
    config.root.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
    thread.start()
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a comparison, not a bind
    base = f"http://{shown_host}:{server.server_port}"
    return SandboxHandle(
        url=base,
        token_url=f"{base}/auth/token",
        client_id=config.client_id,
        client_secret=config.client_secret,
        root=config.root,
        config=config,
        state=app.extensions["sandbox"],
        _server=server,
        _thread=thread,
    )


@contextmanager
def run_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> Iterator[SandboxHandle]:
    handle = start_sandbox(config, host, port)
    try:
        yield handle
    finally:
        handle.stop()
