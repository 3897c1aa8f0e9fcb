"""The live log: only the bytes the job wrote since the last read.

Each read asks FirecREST for `tail -c +<offset+1>` of the job's output file,
so a long job never re-downloads what was already shown.
"""

from __future__ import annotations

from collections import deque

from ci_runner.client import ApiError, Gateway
from ci_runner.report import Reporter

#: What the step summary keeps of the end of the log.
TAIL_KEEP_BYTES = 64 * 1024
MAX_DRAIN_READS = 200


class LogStream:
    """Follows one remote file by byte offset and prints what is new."""

    def __init__(self, gateway: Gateway, system: str, reporter: Reporter) -> None:
        self._gateway = gateway
        self._system = system
        self._reporter = reporter
        self.path: str | None = None
        self.offset = 0
        self._tail: deque[str] = deque()
        self._tail_size = 0
        self._broken = False

    def follow(self, path: str) -> None:
        if path != self.path:
            self.path, self.offset = path, 0

    def read_new(self) -> int:
        """Print new output; returns how many bytes were new (0 if none or not there yet)."""
        if self.path is None or self._broken:
            return 0
        try:
            text = self._gateway.tail_from(self._system, self.path, self.offset)
        except ApiError as error:
            if error.status == 404:
                return 0  # not created yet: the job has not started writing
            self._broken = True
            self._reporter.warning(f"cannot read the job's output {self.path}: {error.message}")
            return 0
        if not text:
            return 0
        size = len(text.encode("utf-8"))
        self.offset += size
        self._reporter.log(text)
        self._keep(text, size)
        return size

    def drain(self) -> None:
        """After the job ended: read until nothing new is left."""
        for _ in range(MAX_DRAIN_READS):
            if not self.read_new():
                return

    def _keep(self, text: str, size: int) -> None:
        self._tail.append(text)
        self._tail_size += size
        while self._tail_size > TAIL_KEEP_BYTES and len(self._tail) > 1:
            self._tail_size -= len(self._tail.popleft().encode("utf-8"))

    @property
    def tail(self) -> str:
        """The end of the log as shown, for the job summary."""
        text = "".join(self._tail)
        encoded = text.encode("utf-8")
        if len(encoded) > TAIL_KEEP_BYTES:
            text = encoded[-TAIL_KEEP_BYTES:].decode("utf-8", errors="ignore")
        return text
