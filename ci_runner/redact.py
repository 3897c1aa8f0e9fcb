"""The one list of secret values, and the filter every output passes through.

Secrets are the client secret and every access token the runner obtains. Any
text bound for stdout, stderr, a log record or a GitHub file is redacted here
first, so a secret that slips into an exception message still never shows.
"""

from __future__ import annotations

import logging

MASK = "***"


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
