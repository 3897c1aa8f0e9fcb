"""Flask app factory for the sandbox FirecREST v2 target (an honest local stand-in).

Routes follow pyfirecrest's v2 client and the real server's routers (status,
compute, filesystem ops and transfers), plus an OIDC token endpoint, the S3
stand-in the transfers use under `/_s3/`, and test controls under
`/_sandbox/`. Cross-cutting behaviour copied from the real server
(src/firecrest/main.py, src/lib/handlers/api_response_handler.py): the path
is lower-cased before routing; every response carries `F7T-AppVersion` and
`F7T-Timestamp` (and `F7T-AuthUsername` once authenticated); every error,
unknown routes included, has the shape
`{"errorType", "message", "causedBy", "data", "user"}`; 204 answers carry
FastAPI's `application/json`; every API route needs a bearer token except
`/status/liveness/`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.firecrest import auth, compute, control, filesystem, s3, status, transfer
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.errors import ApiError, error_body
from sandbox.firecrest.faults import FAULT_MESSAGES
from sandbox.firecrest.state import Sandbox

API_PREFIXES = ("/status/", "/compute/", "/filesystem/")
LIVENESS = "/status/liveness"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LowerCasePath:
    """The real server lower-cases request paths (its `lower_case_path` middleware)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.lower().startswith(API_PREFIXES):
            environ["PATH_INFO"] = path.lower()
        return self.app(environ, start_response)


def _template(rule: str) -> str:
    """Flask's `/compute/<system>/jobs` as the API documents it: `/compute/{system}/jobs`."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def create_app(config: SandboxConfig) -> Flask:
    """One sandbox: its own state, jobs and monitor thread (stop with `app.extensions["sandbox"]`)."""
    app = Flask("sandbox.firecrest")
    box = Sandbox(config)
    app.extensions["sandbox"] = box
    app.wsgi_app = LowerCasePath(app.wsgi_app)  # type: ignore[method-assign]

    def answer(error: ApiError) -> Response:
        response = jsonify(error_body(error.message, g.get("user"), error.error_type, error.data))
        response.status_code = error.status
        for name, value in error.headers.items():
            response.headers[name] = value
        return response

    # -- cross-cutting: stats, faults, authentication, headers -----------------------------

    @app.before_request
    def _guard() -> Response | None:
        if not request.path.startswith(API_PREFIXES):
            return None
        rule = _template(request.url_rule.rule) if request.url_rule else "<unmatched>"
        box.count(f"{request.method} {rule}")
        current = box.config
        fault = box.faults.take_scripted(f"{request.method} {rule}") or box.faults.draw(
            request.method, current.fault_timeout_rate, current.fault_429_rate, current.fault_5xx_rate
        )
        if fault is not None and fault.kind == "timeout":
            time.sleep(current.fault_timeout_seconds)
        elif fault is not None and fault.kind == "429":
            return answer(ApiError(429, FAULT_MESSAGES[429], headers={"Retry-After": fault.retry_after}))
        elif fault is not None and fault.kind == "5xx":
            return answer(ApiError(fault.status, FAULT_MESSAGES[fault.status]))
        if request.path.rstrip("/") == LIVENESS:
            return None  # the real liveness router has no authentication dependency
        box.tokens.check(request.headers.get("Authorization"))
        g.user = current.username
        if fault is not None and fault.kind == "5xx-after-commit":
            g.after_commit = fault.status
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        lost = g.pop("after_commit", None)
        if lost is not None:
            response = answer(ApiError(lost, FAULT_MESSAGES[lost]))
        if response.status_code == 204:
            response.mimetype = "application/json"  # FastAPI's default response class, even when empty
        response.headers["F7T-Timestamp"] = str(time.time())
        response.headers["F7T-AppVersion"] = box.config.api_version
        if g.get("user"):
            response.headers["F7T-AuthUsername"] = g.user
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return answer(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        messages = {
            404: "Not Found",
            405: "Method Not Allowed",
            403: "Forbidden",
            413: "Request Entity Too Large",
        }
        return answer(ApiError(code, messages.get(code, error.name)))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("sandbox error")
        return answer(ApiError(500, f"{error.args}"))

    # -- routes --------------------------------------------------------------------------------

    auth.register(app, box.tokens, lambda: box.config.token_lifetime, box.count_token)
    control.register(app, box)
    status.register(app, box)
    compute.register(app, box)
    filesystem.register(app, box)
    transfer.register(app, box, box.s3)
    s3.register(app, box.s3)
    return app
