"""What the intake reads of one webhook request: its headers, its body and its content type.

The intake needs no more of a request than these three, so it takes them as plain values:
Flask's views hand over their request's, and the delivery shortcut (intake/shortcut.py) reads
them off the WSGI environ without building a werkzeug Request (its construction and body
stream cost a tenth of a delivery's CPU); the headers are werkzeug's own EnvironHeaders. The
size limit and a client that sends less than it announced are answered as werkzeug answers
them (413, 400), by raising its own exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

from middleware.sources.base import HeaderMap

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask import Request


class Incoming:
    """One webhook request as the intake reads it. The body is read when first asked for, so
    that what is refused on its headers alone (an unknown provider) is refused unread."""

    def __init__(self, headers: HeaderMap, content_type: str, read_body: Callable[[], bytes]) -> None:
        self.headers = headers
        self.content_type = content_type
        self._read_body = read_body

    @cached_property
    def body(self) -> bytes:
        """The whole body; raises RequestEntityTooLarge over the limit, ClientDisconnected."""
        return self._read_body()

    @classmethod
    def of(cls, req: Request) -> Incoming:
        """A Flask request's (its body limit is the app's MAX_CONTENT_LENGTH)."""
        return cls(req.headers, req.content_type or "", lambda: req.get_data(cache=True))

    @classmethod
    def of_environ(cls, environ: WSGIEnvironment, max_bytes: int | None) -> Incoming:
        """A WSGI request's, its body refused over `max_bytes` (RequestEntityTooLarge, unread)."""
        content_type = environ.get("CONTENT_TYPE", "")
        return cls(EnvironHeaders(environ), content_type, lambda: read_body(environ, max_bytes))


def read_body(environ: WSGIEnvironment, max_bytes: int | None) -> bytes:
    """The whole body. With a Content-Length (what nginx and GitHub send), exactly that many
    bytes, read straight off `wsgi.input`; otherwise through werkzeug's stream, which knows
    the other cases (a server that ends the input itself, no length at all)."""
    # None when the server ends the input itself, or when the length is missing or no number.
    length = None if environ.get("wsgi.input_terminated") else get_content_length(environ)
    if length is None:
        return bytes(get_input_stream(environ, max_content_length=max_bytes).read())
    if max_bytes is not None and length > max_bytes:
        raise RequestEntityTooLarge()
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    left = length
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise ClientDisconnected()  # fewer bytes than announced, as werkzeug's LimitedStream says
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
