"""The live log: the job's output files, read by byte offset, their end always shown.

Each read asks FirecREST for `tail -c +<offset+1>`, only what is new. The
real server refuses an answer that fills its SSH output buffer (413 `Command
output exceeded buffer limit.`, 5 MiB), so a file that grew by more than that
since the last read cannot come in one piece, and `head`/`tail` cannot reach
its middle at all. The view then shows the file's beginning (if nothing was
shown yet), an "N MB skipped" note and its last `window` bytes, placed with
`stat`; while the file keeps growing that fast, each read starts with `stat`
so the 413 is not paid again. No error stops the stream: the next read is
the retry. After the job ended, `drain` reads every file to its end, so the
last lines (the failure, the summary's tail) are never missing.

A separate `#SBATCH --error` file is followed too, every `STDERR_EVERY`th
read, and the view says which file a chunk comes from, as `tail -f a b` does.

The job script prints an end marker with a per-run random token as its last
line (jobscript.py): seeing it tells the follower to ask the scheduler now.
The marker is never shown; a line that only looks like one (another token)
is ordinary output, and the final state always comes from the scheduler.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field

from ci_runner.client import ApiError, Gateway
from ci_runner.errors import RunnerError
from ci_runner.report import Reporter

#: What the step summary keeps of the end of the log.
TAIL_KEEP_BYTES = 64 * 1024
#: The real server's SSH output buffer (`max_ops_file_size`), for a server that does not say.
DEFAULT_READ_LIMIT = 5 * 1024 * 1024
#: How much of a file's beginning and end the view shows around a skip.
WINDOW = 1024 * 1024
#: A live read's retries: short, since the next read retries anyway.
LIVE_RETRY = 1.0
#: The end of the log is worth waiting for.
FINAL_RETRY = 15.0
#: A separate stderr file is read on every this many live reads (and always at the end).
STDERR_EVERY = 3
MARKER_PREFIX = "firecrest-ci-end-"


def new_end_marker() -> str:
    """A marker no job can print by chance: the prefix and a per-run random token."""
    return MARKER_PREFIX + secrets.token_hex(16)


def size_text(count: int) -> str:
    """Bytes for people: `6.0 MB`, `420 kB`."""
    if count >= 100_000:
        return f"{count / 1e6:.1f} MB"
    return f"{max(count, 0) / 1e3:.0f} kB"


def held_prefix(text: str, line: str) -> int:
    """Length of the longest end of `text` that could be the start of `line`."""
    for size in range(min(len(text), len(line) - 1), 0, -1):
        if text.endswith(line[:size]):
            return size
    return 0


@dataclass
class _File:
    """One followed file: where the view is in it and what it showed last."""

    path: str
    offset: int = 0
    #: Grows fast (a 413, or half a read's worth at once): `stat` before reading.
    fast: bool = False
    #: The last error warned about, so an outage warns once.
    trouble: str | None = None
    kept: deque[str] = field(default_factory=deque)
    kept_size: int = 0

    def keep(self, text: str, limit: int) -> None:
        size = len(text.encode("utf-8"))
        self.kept.append(text)
        self.kept_size += size
        while self.kept_size > limit and len(self.kept) > 1:
            self.kept_size -= len(self.kept.popleft().encode("utf-8"))

    def tail(self, limit: int) -> str:
        encoded = "".join(self.kept).encode("utf-8")
        return (
            encoded[-limit:].decode("utf-8", errors="ignore") if len(encoded) > limit else "".join(self.kept)
        )


class LogStream:
    """Follows the job's stdout (and a separate stderr) and prints what is new."""

    def __init__(
        self,
        gateway: Gateway,
        system: str,
        reporter: Reporter,
        *,
        marker: str | None = None,
        read_limit: int | None = None,
    ) -> None:
        self._gateway = gateway
        self._system = system
        self._reporter = reporter
        self._marker_line = f"{marker}\n" if marker else None
        limit = read_limit or DEFAULT_READ_LIMIT
        #: The most one read may ask for: the buffer, less room for growth while asking.
        self._chunk = limit * 4 // 5
        self._window = min(WINDOW, self._chunk // 4)
        self._out: _File | None = None
        self._err: _File | None = None
        self._shown: _File | None = None
        self._at_line_start = True
        self._held = ""
        self._reads = 0
        self._end_seen = False
        #: The last live read ended with the marker: stdout has nothing more to drain.
        self._out_complete = False

    # -- what the follower sees ----------------------------------------------------

    @property
    def path(self) -> str | None:
        return self._out.path if self._out else None

    @property
    def error_path(self) -> str | None:
        return self._err.path if self._err else None

    @property
    def marker_readable(self) -> bool:
        """The end marker can be seen: there is one, and stdout was read without error last time."""
        return self._marker_line is not None and self._out is not None and self._out.trouble is None

    def follow(self, path: str, error_path: str | None = None) -> None:
        """Follow `path`, and `error_path` too when it is a different file."""
        if self._out is None or self._out.path != path:
            self._out = _File(path)
        if error_path and error_path != path:
            if self._err is None or self._err.path != error_path:
                self._err = _File(error_path)
        else:
            self._err = None

    def saw_end(self) -> bool:
        """Did a read since the last call see the end marker? (Consumes the news.)"""
        seen, self._end_seen = self._end_seen, False
        return seen

    def read_new(self) -> int:
        """One live read: print what is new; returns how many bytes came (0 if none or unreadable)."""
        self._reads += 1
        self._out_complete = False  # only a marker at the end of this very read vouches for the end
        count = 0
        for item in self._files(stderr_now=self._reads % STDERR_EVERY == 1):
            count += self._read(item, retry=LIVE_RETRY, final=False)
        return count

    def drain(self) -> None:
        """After the job ended: read every file to its end (stdout's end is known if the marker was last)."""
        for item in self._files(stderr_now=True):
            if item is self._out and self._out_complete:
                continue
            self._read(item, retry=FINAL_RETRY, final=True)
        self._flush_held()

    @property
    def tail(self) -> str:
        """The end of the log as shown, for the job summary; a separate stderr's end comes last."""
        out, err = self._out, self._err
        if err is None or not err.kept:
            return out.tail(TAIL_KEEP_BYTES) if out else ""
        err_text = err.tail(TAIL_KEEP_BYTES // 2)
        out_text = out.tail(TAIL_KEEP_BYTES - len(err_text.encode("utf-8"))) if out else ""
        joint = "" if not out_text or out_text.endswith("\n") else "\n"
        return f"{out_text}{joint}==> {err.path} <==\n{err_text}"

    # -- reading ---------------------------------------------------------------------

    def _files(self, *, stderr_now: bool) -> list[_File]:
        files = [self._out] if self._out else []
        if self._err is not None and stderr_now:
            files.append(self._err)
        return files

    def _read(self, item: _File, *, retry: float, final: bool) -> int:
        """Read what is new in `item`; an error is warned about once and left to the next read."""
        try:
            count = self._fetch(item, retry)
        except ApiError as error:
            if error.status == 404:
                return 0  # not created yet: the job has not started writing (or never did)
            self._trouble(item, error.message, final)
            return 0
        except RunnerError as error:
            self._trouble(item, error.message, final)
            return 0
        item.trouble = None
        return count

    def _fetch(self, item: _File, retry: float) -> int:
        if not item.fast:
            try:
                text = self._gateway.tail_from(self._system, item.path, item.offset, retry_timeout=retry)
            except ApiError as error:
                if error.status != 413:
                    raise
                item.fast = True  # more than the server's buffer is waiting
            else:
                count = self._take(item, text)
                item.fast = count > self._chunk // 2
                return count
        return self._catch_up(item, retry)

    def _catch_up(self, item: _File, retry: float) -> int:
        """Place the read with `stat`: all that is new if it fits, else the beginning, a note and the end."""
        size = self._gateway.file_size(self._system, item.path, retry_timeout=retry)
        if size < item.offset:
            item.offset = 0  # truncated: a requeued job starts its file again
        if size - item.offset <= self._chunk:
            text = self._gateway.tail_from(self._system, item.path, item.offset, retry_timeout=retry)
            count = self._take(item, text)
            item.fast = count > self._chunk // 2
            return count
        count = 0
        if item.offset == 0:
            head = self._gateway.head_bytes(self._system, item.path, self._window, retry_timeout=retry)
            count += self._take(item, head[: head.rfind("\n") + 1 or len(head)])
        start = size - self._window
        text = self._gateway.tail_from(self._system, item.path, start, retry_timeout=retry)
        newline = text.find("\n")
        if not 0 <= newline < len(text) - 1:
            newline = -1  # no line start to go on from: keep it all
        skipped = start + len(text[: newline + 1].encode("utf-8")) - item.offset
        item.offset = start + len(text[: newline + 1].encode("utf-8"))  # the view goes on at a line start
        self._show(
            item, f"--- firecrest-ci: {size_text(skipped)} skipped; the whole file is {item.path} ---\n"
        )
        return count + self._take(item, text[newline + 1 :])

    def _take(self, item: _File, text: str) -> int:
        """Advance past `text` and show it; returns its size in bytes."""
        if not text:
            return 0
        size = len(text.encode("utf-8"))
        item.offset += size
        if item is self._out:
            text = self._unmark(text)
        self._show(item, text)
        return size

    def _unmark(self, text: str) -> str:
        """Take the end marker out of stdout's text; hold back what may be its first part."""
        line = self._marker_line
        if line is None:
            return text
        text, self._held = self._held + text, ""
        last = text.rfind(line)
        if last >= 0:
            self._end_seen = True
            self._out_complete = last + len(line) == len(text)
            text = text.replace(line, "")
        else:
            self._out_complete = False
        hold = held_prefix(text, line)
        if hold:
            text, self._held = text[:-hold], text[-hold:]
        return text

    def _flush_held(self) -> None:
        if self._held and self._out is not None:
            held, self._held = self._held, ""
            self._show(self._out, held)

    # -- showing ---------------------------------------------------------------------

    def _show(self, item: _File, text: str) -> None:
        """Print `text` of `item`, under a `==> path <==` header when two files take turns."""
        if not text:
            return
        if self._err is not None and item is not self._shown:
            self._emit(item, f"==> {item.path} <==\n", own_line=True, keep=False)
        self._shown = item
        self._emit(item, text, own_line=text.startswith("--- firecrest-ci:"))

    def _emit(self, item: _File, text: str, *, own_line: bool = False, keep: bool = True) -> None:
        if own_line and not self._at_line_start:
            text = "\n" + text
        self._reporter.log(text)
        self._at_line_start = text.endswith("\n")
        if keep:
            item.keep(text, TAIL_KEEP_BYTES)

    def _trouble(self, item: _File, message: str, final: bool) -> None:
        if final:
            self._reporter.warning(f"could not read the end of {item.path}: {message}")
        elif item.trouble != message:
            self._reporter.warning(f"cannot read {item.path} now ({message}); trying again at the next read")
        item.trouble = message
