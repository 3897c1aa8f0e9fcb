"""Serve the GitHub stand-in on loopback in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.firecrest.server import QuietHandler
from sandbox.github.app import GitHubState, create_app


@dataclass
class GitHubHandle:
    #: What PyGithub's `base_url` takes.
    url: str
    state: GitHubState
    _server: BaseWSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def start_github(state: GitHubState | None = None, host: str = "127.0.0.1", port: int = 0) -> GitHubHandle:
    app = create_app(state)
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="github-stand-in", daemon=True)
    thread.start()
    return GitHubHandle(f"http://{host}:{server.server_port}", app.extensions["github_state"], server, thread)


@contextmanager
def run_github(state: GitHubState | None = None) -> Iterator[GitHubHandle]:
    handle = start_github(state)
    try:
        yield handle
    finally:
        handle.stop()
