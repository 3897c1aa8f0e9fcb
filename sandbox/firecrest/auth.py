"""An OIDC client-credentials token endpoint and the bearer check the API applies.

Tokens are opaque random strings with an expiry (the real server checks signed
JWTs; the client cannot tell the difference). The refusals use the real
server's words (src/lib/auth/authN/OIDC_token_auth.py and FastAPI's
HTTPBearer): no token "Not authenticated", unknown "Access token is invalid.",
expired "Access token expired", and, like the real server's `min_token_ttl`,
a token with less than 30 s left is refused as expiring too soon.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from flask import Flask, Response, jsonify, request

from sandbox.firecrest.errors import ApiError

#: The real server's default `min_token_ttl`.
MIN_TOKEN_TTL = 30


class TokenStore:
    """Issued tokens and their expiry; thread-safe."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        id_ok = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        return id_ok and secret_ok

    def issue(self, lifetime: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            # Forget tokens long expired, keep recent ones to answer "expired" rather than "invalid".
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now - 3600}
            self._tokens[token] = now + lifetime
            self.issued += 1
        return token

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def known_tokens(self) -> list[str]:
        """Every token issued and not forgotten, expired ones included (tests look for leaks)."""
        with self._lock:
            return list(self._tokens)

    def check(self, authorization: str | None) -> None:
        """Raise the real server's 401 unless the bearer token may be used now."""
        if not authorization:
            raise ApiError(401, "Not authenticated")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Invalid authentication credentials")
        with self._lock:
            expiry = self._tokens.get(token)
        now = time.time()
        if expiry is None:
            raise ApiError(401, "Access token is invalid.")
        if expiry <= now:
            raise ApiError(401, "Access token expired")
        if expiry - now < MIN_TOKEN_TTL:
            raise ApiError(401, f"Access token expires too soon (less than {MIN_TOKEN_TTL}s remaining).")


def client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
    """client_secret_basic (Authorization header, RFC 6749 2.3.1) or client_secret_post (form)."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization.split(" ", 1)[1], validate=True).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, client_secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(client_secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def _oidc_error(status: int, error: str, description: str) -> tuple[Response, int]:
    return jsonify({"error": error, "error_description": description}), status


def register(
    app: Flask, tokens: TokenStore, lifetime: Callable[[], float], counted: Callable[[], None]
) -> None:
    """Add `POST /auth/token` (the identity provider side, not part of FirecREST)."""

    @app.post("/auth/token")
    def token() -> Response | tuple[Response, int]:
        counted()
        form = {k: v for k, v in request.form.items()}
        if form.get("grant_type") != "client_credentials":
            return _oidc_error(400, "unsupported_grant_type", "Unsupported grant_type")
        client_id, client_secret = client_credentials(form, request.headers.get("Authorization"))
        if not client_id:
            return _oidc_error(401, "invalid_client", "Missing parameter: client_id")
        if not tokens.client_ok(client_id, client_secret):
            return _oidc_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        seconds = lifetime()
        response = jsonify(
            {
                "access_token": tokens.issue(seconds),
                "token_type": "Bearer",
                "expires_in": int(seconds),
                "refresh_expires_in": 0,
                "not-before-policy": 0,
                "scope": "firecrest-v2",
            }
        )
        response.headers["Cache-Control"] = "no-store"
        return response
