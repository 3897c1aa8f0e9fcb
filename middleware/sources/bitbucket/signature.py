"""Bitbucket Cloud's `X-Hub-Signature: sha256=<hex>`: HMAC-SHA256 of the raw body with the
webhook's secret. Only sha256 passes: nothing weaker is accepted, whatever the header claims."""

from __future__ import annotations

import hashlib
import hmac
import re

from middleware.sources.base import HeaderMap
from middleware.sources.bitbucket.events import header

HEADER = "X-Hub-Signature"
_VALUE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def sign(body: bytes, secret: str) -> str:
    """The header value Bitbucket Cloud would send for this body (for tests and the demo)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: HeaderMap, body: bytes, secret: str) -> bool:
    """Constant-time check. Missing, sha1, malformed or an empty secret (anyone could sign with it)
    never pass."""
    if not secret:
        return False
    found = _VALUE.fullmatch((header(headers, HEADER) or "").strip())
    if found is None:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), found.group(1).lower().encode())
