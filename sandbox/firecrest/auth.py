"""An OIDC client-credentials token endpoint and the bearer check the API applies.

Tokens are opaque random strings with an expiry. Like the real v2 server, a
token with less than 30 s left is refused ("Access token expires too soon").
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

#: The real server refuses tokens closer than this to their expiry.
MIN_REMAINING = 30.0


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


class TokenStore:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return hmac.compare_digest(client_id.encode(), self._client_id.encode()) and hmac.compare_digest(
            client_secret.encode(), self._client_secret.encode()
        )

    def issue(self, lifetime: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + lifetime
            self.issued += 1
        return token

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def check(self, authorization: str | None) -> Refusal | None:
        """None if the bearer token may be used, else why not (in the real server's words)."""
        if not authorization:
            return Refusal(401, "Not authenticated")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Refusal(401, "Not authenticated")
        with self._lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None or expiry <= time.time():
            return Refusal(401, "Access token is invalid.")
        if expiry - time.time() < MIN_REMAINING:
            return Refusal(401, "Access token expires too soon")
        return None

    def known_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)


def client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
    """client_secret_basic (Authorization header) or client_secret_post (form fields)."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization.split(" ", 1)[1]).decode()
            client_id, _, client_secret = decoded.partition(":")
            return client_id, client_secret
        except (ValueError, UnicodeDecodeError):
            return "", ""
    return form.get("client_id", ""), form.get("client_secret", "")
