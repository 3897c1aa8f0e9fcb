"""Serve the GitLab stand-in on loopback in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.firecrest.server import QuietHandler
from sandbox.gitlab.app import GitLabState, create_app
from sandbox.gitlab.pipelines import Pipeline


@dataclass
class GitLabHandle:
    #: What python-gitlab's `url` takes (it appends /api/v4).
    url: str
    token: str
    state: GitLabState
    _server: BaseWSGIServer
    _thread: threading.Thread
    #: Every pipeline created, by id (what the API lists, for tests that count them).
    pipelines: dict[int, Pipeline]

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


@contextmanager
def run_gitlab(root: Path, token: str = "glpat-sandbox-token-0123456789") -> Iterator[GitLabHandle]:  # noqa: S107 - the stand-in's own token
    state = GitLabState(root=root)
    state.tokens.add(token)
    app = create_app(state)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="gitlab-stand-in", daemon=True
    )
    thread.start()
    handle = GitLabHandle(
        f"http://127.0.0.1:{server.server_port}",
        token,
        state,
        server,
        thread,
        app.extensions["gitlab_pipelines"],
    )
    try:
        yield handle
    finally:
        handle.stop()
