"""Failures no route can answer itself, answered once for all of them.

Routes answer their expected failures themselves (4xx with a readable text). What
none of them can is the storage being unreachable, which may happen on any query:
`storage_unavailable` tells that apart from a bug (a DataError from input no check
caught stays a 500, so that tests find it), and `register` answers it with 503 on
every route, JSON under `/api/`, plain text elsewhere. The GitHub intake catches it
itself, to count and log the delivery and to tell GitHub to redeliver. The same goes for
stored credentials no key of the configured ring opens (`KeyRingMismatch`): the operator
must restore the ring, so every route answers 503 and it is logged at ERROR, never with a
secret. `register` also makes JSON nested too deep for the parser fail like any other
invalid JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from middleware.crypto import KeyRingMismatch
from middleware.logs import logger

#: Failures of reaching the database, as opposed to failures of a statement.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def storage_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (refused, dropped, pool exhausted)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def unavailable_text(error: BaseException) -> str:
    """What happened, by kind only: the error's own text may carry SQL and its parameters."""
    return f"storage unavailable ({type(error).__name__})"


def error_headers(error: HTTPException) -> list[tuple[str, str]]:
    """The headers an HTTP error's answer keeps whatever its body: Allow of a 405, Retry-After
    of a 429 or 503 (not its Content-Type: the answer has its own)."""
    return [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]


def key_ring_mismatch(error: KeyRingMismatch, **where: object) -> str:
    """Log, at ERROR, that stored credentials cannot be decrypted; the text to answer with.

    Only the error's kind and `where` are logged: its text is fixed, it holds no secret.
    """
    logger().error(
        "stored credentials cannot be decrypted: restore MIDDLEWARE_SECRET_KEY(S)",
        extra={**where, "error": type(error).__name__},
    )
    return str(error)


class _JSONProvider(DefaultJSONProvider):
    """`request.get_json(silent=True)` catches ValueError only; a body like `[[[[…` raises RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deep") from None


def register(app: Flask) -> None:
    """Answer an unreachable database, and stored credentials the key ring cannot open, with 503
    on every route; any other database error is a bug."""
    app.json = _JSONProvider(app)

    @app.errorhandler(SQLAlchemyError)
    def _storage_error(error: SQLAlchemyError) -> Response:
        if not storage_unavailable(error):
            raise error
        orig = getattr(error, "orig", None)
        logger().warning(
            "storage unavailable",
            extra={"path": request.path, "error": type(orig if orig is not None else error).__name__},
        )
        text = f"{unavailable_text(error)}; try again later"
        if request.path.startswith("/api/"):
            answer = jsonify({"error": text})
        else:
            answer = Response(text + "\n", mimetype="text/plain")
        answer.status_code = 503
        answer.headers["Retry-After"] = "30"
        return answer

    @app.errorhandler(KeyRingMismatch)
    def _key_ring_mismatch(error: KeyRingMismatch) -> Response:
        text = key_ring_mismatch(error, path=request.path)
        if request.path.startswith("/api/"):
            answer = jsonify({"error": text})
        else:
            answer = Response(text + "\n", mimetype="text/plain")
        answer.status_code = 503
        return answer
