"""GitLab's `X-Gitlab-Token`: the webhook's secret token, sent as it is (GitLab signs nothing).

The check is all a GitLab delivery can prove, so it is constant-time and an empty
secret or header never passes.
"""

from __future__ import annotations

import hmac

from middleware.sources.base import HeaderMap

HEADER = "X-Gitlab-Token"


def header(headers: HeaderMap, name: str) -> str | None:
    """A header's value by case-insensitive name (a plain dict in tests, Werkzeug's Headers live)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _raw(text: str) -> bytes:
    # Werkzeug hands header values over decoded as latin-1: encoding back gives the bytes sent.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def verify(headers: HeaderMap, secret: str) -> bool:
    """Whether `X-Gitlab-Token` is the registration's secret (constant time)."""
    sent = header(headers, HEADER)
    if not sent or not secret:
        return False
    return hmac.compare_digest(_raw(sent), secret.encode("utf-8", "surrogatepass"))
