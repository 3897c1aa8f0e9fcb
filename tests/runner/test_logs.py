"""The live log over local files, with the real server's output buffer limit (413)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from ci_runner.client import ApiError
from ci_runner.errors import InfrastructureError, RunnerError
from ci_runner.logs import MARKER_PREFIX, LogStream, held_prefix, new_end_marker, size_text
from ci_runner.redact import Redactor
from ci_runner.report import Reporter

LIMIT = 5 * 1024 * 1024  # the real server's SSH output buffer


class FileGateway:
    """The gateway's file reads over local files: `tail -c +N`, `head -c`, `stat`, and the 413."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.requests = 0
        self.calls: list[str] = []
        #: Errors the next requests raise instead of answering, in order.
        self.failures: list[RunnerError | ApiError] = []

    def _data(self, op: str, path: str) -> bytes:
        self.requests += 1
        self.calls.append(op)
        if self.failures:
            raise self.failures.pop(0)
        if not Path(path).exists():
            raise ApiError(404, f"Remote process failed: {op}: {path}: No such file or directory")
        return Path(path).read_bytes()

    def _answer(self, data: bytes) -> str:
        if len(data) >= self.limit:
            raise ApiError(413, "Command output exceeded buffer limit.")
        return data.decode("utf-8", errors="replace")

    def tail_from(self, system: str, path: str, offset: int, *, retry_timeout: float | None = None) -> str:
        return self._answer(self._data("tail", path)[offset:])

    def head_bytes(
        self, system: str, path: str, num_bytes: int, *, retry_timeout: float | None = None
    ) -> str:
        return self._answer(self._data("head", path)[:num_bytes])

    def file_size(self, system: str, path: str, *, retry_timeout: float | None = None) -> int:
        return len(self._data("stat", path))


def stream(tmp_path: Path, marker: str | None = None) -> tuple[LogStream, FileGateway, io.StringIO]:
    """A log of `slurm-1.out` in `tmp_path`; what it shows and warns lands in one text, in order."""
    gateway = FileGateway()
    shown = io.StringIO()
    reporter = Reporter(Redactor(), out=shown, err=shown)
    log = LogStream(gateway, "cluster", reporter, marker=marker)  # type: ignore[arg-type]
    log.follow(str(tmp_path / "slurm-1.out"))
    return log, gateway, shown


def lines(count: int, width: int = 99) -> bytes:
    return b"".join(b"%08d " % i + b"x" * (width - 9) + b"\n" for i in range(count))


def test_only_new_bytes_are_read_and_shown(tmp_path):
    log, _gateway, shown = stream(tmp_path)
    out = tmp_path / "slurm-1.out"
    assert log.read_new() == 0  # not created yet
    out.write_text("one\n")
    assert log.read_new() == 4
    with out.open("a") as handle:
        handle.write("two\n")
    assert log.read_new() == 4
    assert log.read_new() == 0
    assert shown.getvalue() == "one\ntwo\n"
    assert log.tail == "one\ntwo\n"


def test_a_6_mb_log_then_a_failure_line_shows_its_beginning_a_note_and_its_end(tmp_path):
    (tmp_path / "slurm-1.out").write_bytes(lines(60_000) + b"FAILURE: the solver diverged\n")
    log, gateway, shown = stream(tmp_path)
    log.drain()
    text = shown.getvalue()
    assert text.startswith("00000000 xxx")
    assert re.search(
        r"\n--- firecrest-ci: 3\.9 MB skipped; the whole file is \S+/slurm-1.out ---\n\d{8} x", text
    )
    assert text.endswith("FAILURE: the solver diverged\n")
    assert "FAILURE: the solver diverged" in log.tail
    assert gateway.calls == ["tail", "stat", "head", "tail"]  # the 413, then the window


def test_a_file_that_keeps_outgrowing_one_read_is_placed_with_stat_first(tmp_path):
    out = tmp_path / "slurm-1.out"
    log, gateway, shown = stream(tmp_path)
    out.write_bytes(lines(60_000))
    log.read_new()
    with out.open("ab") as handle:
        handle.write(lines(60_000) + b"last line\n")
    gateway.calls.clear()
    log.read_new()
    assert gateway.calls == ["stat", "tail"]  # no 413 paid again
    assert shown.getvalue().count("MB skipped") == 2
    assert shown.getvalue().endswith("last line\n")
    assert log.read_new() == 0


def test_one_failed_read_does_not_stop_the_stream(tmp_path):
    out = tmp_path / "slurm-1.out"
    log, gateway, shown = stream(tmp_path)
    out.write_text("before\n")
    gateway.failures = [InfrastructureError("FirecREST kept failing (503)"), ApiError(500, "ssh broke")]
    assert log.read_new() == 0
    assert log.read_new() == 0
    assert log.read_new() == 7
    with out.open("a") as handle:
        handle.write("after\n")
    log.drain()
    text = shown.getvalue()
    assert "warning: cannot read" in text and "(ssh broke); trying again at the next read" in text
    assert text.endswith("before\nafter\n")


def test_the_same_error_again_warns_once(tmp_path):
    log, gateway, shown = stream(tmp_path)
    (tmp_path / "slurm-1.out").write_text("x\n")
    gateway.failures = [ApiError(500, "same"), ApiError(500, "same"), ApiError(500, "same")]
    for _ in range(3):
        log.read_new()
    assert shown.getvalue().count("warning") == 1


def test_the_end_marker_is_seen_never_shown_and_a_forged_one_is_ordinary_output(tmp_path):
    marker = new_end_marker()
    forged = MARKER_PREFIX + "0" * 32
    log, _gateway, shown = stream(tmp_path, marker)
    out = tmp_path / "slurm-1.out"
    out.write_text(f"start\n{forged}\n")
    log.read_new()
    assert not log.saw_end()
    with out.open("a") as handle:
        handle.write(f"last words{marker}\n")
    log.read_new()
    assert log.saw_end() and not log.saw_end()
    log.drain()
    assert shown.getvalue() == f"start\n{forged}\nlast words"
    assert marker not in log.tail


def test_a_marker_split_between_two_reads_is_held_back_then_dropped(tmp_path):
    marker = new_end_marker()
    log, gateway, shown = stream(tmp_path, marker)
    out = tmp_path / "slurm-1.out"
    out.write_text("done\n" + marker[:10])
    log.read_new()
    assert shown.getvalue() == "done\n"
    with out.open("a") as handle:
        handle.write(marker[10:] + "\n")
    log.read_new()
    assert log.saw_end()
    gateway.calls.clear()
    log.drain()
    assert gateway.calls == []  # the marker was the last thing in stdout: nothing left to read
    assert shown.getvalue() == "done\n"


def test_text_that_only_starts_like_the_marker_is_shown_at_the_end(tmp_path):
    marker = new_end_marker()
    log, _gateway, shown = stream(tmp_path, marker)
    (tmp_path / "slurm-1.out").write_text("prompt> fire")
    log.read_new()
    assert shown.getvalue() == "prompt> "
    log.drain()
    assert shown.getvalue() == "prompt> fire"


def test_a_separate_stderr_file_is_followed_with_headers_and_ends_the_summary(tmp_path):
    log, _gateway, shown = stream(tmp_path)
    out, err = tmp_path / "slurm-1.out", tmp_path / "err.txt"
    log.follow(str(out), str(err))
    out.write_text("to stdout\n")
    err.write_text("to stderr\n")
    log.read_new()
    with out.open("a") as handle:
        handle.write("more stdout\n")
    log.read_new()  # stderr is read every few reads only
    with err.open("a") as handle:
        handle.write("Traceback: boom\n")
    log.drain()
    assert shown.getvalue() == (
        f"==> {out} <==\nto stdout\n==> {err} <==\nto stderr\n"
        f"==> {out} <==\nmore stdout\n==> {err} <==\nTraceback: boom\n"
    )
    assert log.tail == f"to stdout\nmore stdout\n==> {err} <==\nto stderr\nTraceback: boom\n"


def test_stderr_merged_into_stdout_is_one_file(tmp_path):
    log, gateway, _shown = stream(tmp_path)
    out = str(tmp_path / "slurm-1.out")
    log.follow(out, out)
    assert log.error_path is None
    log.drain()
    assert gateway.calls == ["tail"]


@pytest.mark.parametrize(
    ("count", "text"), [(6_000_010, "6.0 MB"), (4_900_000, "4.9 MB"), (420_000, "0.4 MB"), (12_345, "12 kB")]
)
def test_sizes_read_like_people_write_them(count, text):
    assert size_text(count) == text


def test_held_prefix_finds_a_marker_cut_anywhere():
    assert held_prefix("abc firecrest-ci-e", "firecrest-ci-end-1\n") == len("firecrest-ci-e")
    assert held_prefix("abc\n", "firecrest-ci-end-1\n") == 0
