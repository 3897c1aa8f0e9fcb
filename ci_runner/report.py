"""Where the runner's progress goes: a terminal, or a GitHub Actions log.

The lifecycle modules only call this interface; `github.py` adds workflow
commands on top. Everything printed passes through the redactor.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ci_runner.redact import Redactor


class Reporter:
    """Plain console output: progress on stderr, the job's log on stdout."""

    def __init__(
        self,
        redactor: Redactor,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.redactor = redactor
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._log_open = False
        self._log_ends_with_newline = True

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(self.redactor(text))
        stream.flush()

    def info(self, message: str) -> None:
        """A progress line about the runner itself."""
        self._close_partial_line()
        self._write(self._err, f"firecrest-ci: {message}\n")

    def warning(self, message: str) -> None:
        self._close_partial_line()
        self._write(self._err, f"firecrest-ci: warning: {message}\n")

    def error(self, message: str) -> None:
        self._close_partial_line()
        self._write(self._err, f"firecrest-ci: error: {message}\n")

    def mask(self, value: str) -> None:
        """Register a runtime-derived secret (an access token) for redaction."""
        self.redactor.add(value)

    def start_log(self, title: str) -> None:
        """Begin streaming the job's own output."""
        self.info(title)
        self._log_open = True

    def log(self, text: str) -> None:
        """A chunk of the job's output, exactly as the job wrote it."""
        if text:
            self._write(self._out, text)
            self._log_ends_with_newline = text.endswith("\n")

    def end_log(self) -> None:
        self._close_partial_line()
        self._log_open = False

    def _close_partial_line(self) -> None:
        if not self._log_ends_with_newline:
            self._write(self._out, "\n")
            self._log_ends_with_newline = True
