"""Deliveries answered before Flask's request machinery.

A delivery is the request that comes by the thousand: one per push, pull request and comment
of every registered repository, and GitHub waits for each answer. Flask's request context
(matching the URL against every route, the session, the hooks and signals the pages need)
cost about as much CPU as the intake's own work: a one-route Flask app used 365 us more per
request than a bare WSGI callable under gunicorn behind nginx (README, "Acknowledgement
throughput").

So this WSGI middleware answers `POST /webhooks/github` and `POST /webhooks/source/<provider>`
itself, in an app context (services, metrics and logs work as in a view), with the very
function the blueprint's views call, and with the headers every answer carries. The request is
read off the WSGI environ (intake/incoming.py), without a werkzeug Request. The answer is
a short plain text, so it is written as WSGI status, headers and body directly (a werkzeug
Response object and its header fixing cost a tenth of the rest). Everything
else, and every failure the intake does not answer itself (a body over the limit, a bug),
goes through Flask as before: those answers, logs and test-mode propagation are Flask's own.
The routes stay in the URL map, so the OpenAPI document, the 405 for other methods and the
hostile-request test see them as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response

from middleware.intake.incoming import Incoming
from middleware.intake.webhooks import answer
from middleware.web.security import EVERY_ANSWER

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

GITHUB_PATH = "/webhooks/github"
SOURCE_PREFIX = "/webhooks/source/"


def provider_of(path: str) -> str | None:
    """The provider a delivery's path names, as the routes would match it; None for any other path."""
    if path == GITHUB_PATH:
        return "github"
    if path.startswith(SOURCE_PREFIX):
        name = path[len(SOURCE_PREFIX) :]
        if name and "/" not in name:
            return name
    return None


class WebhookShortcut:
    """WSGI middleware in front of the Flask app's own `wsgi_app`: deliveries go to the intake
    directly, every other request to `wsgi_app`."""

    def __init__(self, app: Flask, wsgi_app: WSGIApplication) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        post = environ.get("REQUEST_METHOD") == "POST"
        provider = provider_of(environ.get("PATH_INFO", "")) if post else None
        if provider is None:
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            incoming = Incoming.of_environ(environ, self.app.config["MAX_CONTENT_LENGTH"])
            try:
                status, text = answer(provider, incoming)
            except Exception as error:  # noqa: BLE001 - Flask answers it, as for any view
                return self._through_flask(environ, error)(environ, start_response)
        body = text.encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *EVERY_ANSWER,
        ]
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", headers)
        return [body]

    def _through_flask(self, environ: WSGIEnvironment, error: Exception) -> Response:
        """Flask's answer to `error` raised by a view: its error handlers, after-request hooks,
        logging of unhandled errors, and propagation in testing (called while handling it)."""
        app = self.app
        with app.request_context(environ):
            try:
                return app.finalize_request(app.handle_user_exception(error))
            except Exception as unhandled:  # noqa: BLE001 - what Flask's wsgi_app does
                return app.handle_exception(unhandled)
