"""The pages' protections: session key and cookies, CSRF, security headers.

Only the pages' blueprints (those defined under `middleware.web`) are CSRF-checked: the JSON
API, the webhooks, /metrics, the health checks and /openapi.json authenticate otherwise and
keep working without a token.
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, Request, Response, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]
from werkzeug.datastructures import Headers

from middleware.settings import Settings

#: The package whose blueprints are pages.
PAGES_PACKAGE = "middleware.web"


def session_key(secret_key: str) -> bytes:
    """The Flask SECRET_KEY: derived from MIDDLEWARE_SECRET_KEY for this one purpose (HKDF), so
    the key that encrypts stored credentials never signs cookies itself."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"firecrest-ci pages session signing"
    ).derive(secret_key.encode())


def content_security_policy(github_url: str) -> str:
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action 'self' {github_url.rstrip('/')}; frame-ancestors 'none'; base-uri 'none'"
    )


#: The headers every answer carries, pages or not (the webhook shortcut's too).
EVERY_ANSWER = (("X-Content-Type-Options", "nosniff"),)


def every_answer(headers: Headers) -> None:
    """Add EVERY_ANSWER's headers that `headers` lacks."""
    for name, value in EVERY_ANSWER:
        headers.setdefault(name, value)


def is_page_request() -> bool:
    """Whether this request is for a page (a blueprint of `middleware.web`)."""
    name = request.blueprint
    if not name:
        return False
    blueprint = current_app.blueprints.get(name.split(".")[0])
    return blueprint is not None and blueprint.import_name.startswith(PAGES_PACKAGE)


class CookieFirstSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the cookie looked for before the signer is built: a
    request without one (every webhook and API call) gets a new empty session for free."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ or self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def init_security(app: Flask, settings: Settings) -> None:
    """Configure the session, CSRF and the headers."""
    app.config.update(
        SECRET_KEY=session_key(settings.middleware_secret_key),
        SESSION_COOKIE_NAME="firecrest_ci_session",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings.session_lifetime),
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=settings.session_lifetime,
    )
    app.session_interface = CookieFirstSessions()
    csrf = CSRFProtect(app)

    @app.before_request
    def _csrf_for_pages() -> None:
        if request.method not in ("GET", "HEAD", "OPTIONS") and is_page_request():
            csrf.protect()

    policy = content_security_policy(settings.github_url)

    @app.after_request
    def _headers(response: Response) -> Response:
        every_answer(response.headers)
        if is_page_request() or response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = policy
            response.headers["Referrer-Policy"] = "same-origin"  # Flask-WTF's HTTPS check reads it
            response.headers["X-Frame-Options"] = "DENY"
            response.headers.setdefault("Cache-Control", "no-store")
        return response
