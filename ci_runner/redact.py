"""The one list of secret values, and the filter every output passes through.

Secrets are the client secret, every access token the runner obtains, and
the password of a repository URL (GitLab's `CI_REPOSITORY_URL` carries the
job token). Any text bound for stdout, stderr, a log record or a GitHub file
is redacted here first, so a secret that slips into an exception message
still never shows; the user part of any `scheme://user:pass@host` URL is
masked too, whoever wrote it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
#: `scheme://userinfo@`: the userinfo is what a URL carries credentials in.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s'\"]+@")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its userinfo, and the percent-decoded user and password it carried.

    Only URLs with a scheme have userinfo; `git@host:path` (scp syntax) is returned as is.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if not parts.scheme or "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=hostport))
    return clean, unquote(user) or None, unquote(password) if has_password else None


def public_url(url: str) -> str:
    """The URL as it may be shown or written anywhere: without user or password."""
    return split_userinfo(url)[0]


class Redactor:
    """Replaces every registered secret value with `***`."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, value: str | None) -> bool:
        """Register a secret; returns True when it was not known yet."""
        if not value or len(value) < 4 or value in self._secrets:
            return False
        self._secrets.add(value)
        return True

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        if "@" in text:
            text = _USERINFO.sub(rf"\1{MASK}@", text)
        return text


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the fully formatted message of every record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
