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
    # A short poll interval: stopping then takes milliseconds, not half a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-stand-in", daemon=True
    )
    thread.start()
    url = f"http://{host}:{server.server_port}"
    gh: GitHubState = app.extensions["github_state"]
    gh.api_url = url  # links in the webhooks the stand-in sends point back at it
    return GitHubHandle(url, gh, server, thread)


@contextmanager
def run_github(state: GitHubState | None = None) -> Iterator[GitHubHandle]:
    handle = start_github(state)
    try:
        yield handle
    finally:
        handle.stop()
