"""Serve the Bitbucket Cloud stand-in on loopback in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.bitbucket.app import BitbucketState, create_app
from sandbox.firecrest.server import QuietHandler


@dataclass
class BitbucketHandle:
    #: Where pages and git live (bitbucket.org's stand-in): clone URLs are `{url}/{workspace}/{slug}.git`.
    url: str
    #: What the provider's `api_url` takes (api.bitbucket.org/2.0's stand-in).
    api_url: str
    state: BitbucketState
    _server: BaseWSGIServer
    _thread: threading.Thread

    def clone_url(self, full_name: str) -> str:
        return f"{self.url}/{full_name}.git"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def start_bitbucket(
    state: BitbucketState | None = None, host: str = "127.0.0.1", port: int = 0
) -> BitbucketHandle:
    """Start serving now; the caller must `stop()` the handle."""
    app = create_app(state)
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    # A short poll: `stop()` waits for the loop's next turn, and tests start one stand-in each.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="bitbucket-stand-in", daemon=True
    )
    thread.start()
    url = f"http://{host}:{server.server_port}"
    return BitbucketHandle(url, f"{url}/2.0", app.extensions["bitbucket_state"], server, thread)


@contextmanager
def run_bitbucket(state: BitbucketState | None = None) -> Iterator[BitbucketHandle]:
    handle = start_bitbucket(state)
    try:
        yield handle
    finally:
        handle.stop()
