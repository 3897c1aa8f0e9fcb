"""GitHub Actions plumbing: workflow commands, outputs, state and the job summary.

The remote log is wrapped in `::stop-commands::<random token>`, so a job that
prints `::add-mask::` or `::error::` cannot drive the workflow. The runner's
own commands (masks, errors) briefly resume command processing with the
token, which the job cannot guess.
"""

from __future__ import annotations

import html
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ci_runner.durations import format_duration
from ci_runner.junit import FailedCase, TestTally, clip, format_test_time
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.result import Outcome

#: GitHub refuses step summaries above 1 MiB.
SUMMARY_LIMIT = 1024 * 1024
SUMMARY_LOG_BYTES = 60 * 1024
#: The most the tests' part of the summary takes; the rest is the table and the log's end.
SUMMARY_TESTS_BYTES = 256 * 1024
#: Characters of a failure message in a summary row.
SUMMARY_MESSAGE_CHARS = 300
#: GitHub shows at most 10 error annotations per step (and 50 per job); more are dropped.
MAX_ERROR_ANNOTATIONS = 10
#: Characters of a failure text in an annotation.
ANNOTATION_CHARS = 2000
#: Shown for a value the job record does not give (an en dash).
MISSING = "\u2013"
_TIMES = "\u00d7"


def escape_data(value: str) -> str:
    """Workflow-command message escaping, as in @actions/core."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Workflow-command property escaping (`file=`, `title=`), as in @actions/core."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


class GitHubReporter(Reporter):
    """Console output plus workflow commands; the live log is a collapsed group."""

    def __init__(self, redactor: Redactor, *, out: TextIO | None = None, err: TextIO | None = None) -> None:
        super().__init__(redactor, out=out, err=err)
        self._stop_token: str | None = None
        #: Error annotations so far: GitHub shows only the first MAX_ERROR_ANNOTATIONS of a step.
        self.errors_emitted = 0

    def _command(self, line: str) -> None:
        """A workflow command on stdout; commands are resumed around it if stopped."""
        token = self._stop_token
        self._close_partial_line()
        if token:
            self._out.write(f"::{token}::\n")
        self._out.write(line + "\n")
        if token:
            self._stop_token = secrets.token_hex(16)
            self._out.write(f"::stop-commands::{self._stop_token}\n")
        self._out.flush()

    def info(self, message: str) -> None:
        self._close_partial_line()
        self._write(self._out, f"firecrest-ci: {message}\n")

    def warning(self, message: str) -> None:
        self._command(f"::warning title=firecrest-ci::{escape_data(self.redactor(message))}")

    def error(self, message: str) -> None:
        self.annotate("error", message)

    def annotate(
        self,
        level: str,
        message: str,
        *,
        title: str = "firecrest-ci",
        file: str = "",
        line: int | None = None,
    ) -> None:
        """`::error file=F,line=L,title=T::message` (or warning/notice); file and line only if known."""
        properties = [f"file={escape_property(self.redactor(file))}"] if file else []
        if file and line is not None and line > 0:
            properties.append(f"line={line}")
        properties.append(f"title={escape_property(self.redactor(title))}")
        if level == "error":
            self.errors_emitted += 1
        self._command(f"::{level} {','.join(properties)}::{escape_data(self.redactor(message))}")

    def mask(self, value: str) -> None:
        # The mask line must carry the value itself, so it is written before the
        # value joins the redactor; nothing else may print it.
        if value and self.redactor.add(value):
            self._command(f"::add-mask::{value}")

    def start_log(self, title: str) -> None:
        self._close_partial_line()
        self._out.write(f"::group::{escape_data(title)}\n")
        self._stop_token = secrets.token_hex(16)
        self._out.write(f"::stop-commands::{self._stop_token}\n")
        self._out.flush()
        self._log_open = True

    def end_log(self) -> None:
        self._close_partial_line()
        if self._stop_token:
            self._out.write(f"::{self._stop_token}::\n")
            self._stop_token = None
        if self._log_open:
            self._out.write("::endgroup::\n")
            self._log_open = False
        self._out.flush()


def _delimiter(values: Mapping[str, str]) -> str:
    while True:
        candidate = f"ghadelimiter_{uuid.uuid4()}"
        if not any(candidate in v for v in values.values()):
            return candidate


def write_outputs(path: str | None, outputs: Mapping[str, str], redactor: Redactor) -> None:
    """Append `name<<DELIM` blocks to $GITHUB_OUTPUT (multiline-safe)."""
    if not path:
        return
    clean = {k: redactor(v) for k, v in outputs.items()}
    delimiter = _delimiter(clean)
    with open(path, "a", encoding="utf-8") as handle:
        for name, value in clean.items():
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def save_state(path: str | None, values: Mapping[str, str]) -> None:
    """$GITHUB_STATE, read back by the post step as STATE_<name>."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for name, value in values.items():
            handle.write(f"{name}={value}\n")


def outputs_for(outcome: Outcome, tests: TestTally | None = None) -> dict[str, str]:
    return {
        "job_id": outcome.job_id,
        "state": outcome.state,
        "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
        "output_path": outcome.output_path or "",
        "working_dir": outcome.working_dir,
        "tests": tests.output() if tests is not None else "",
    }


def _annotation_text(case: FailedCase) -> str:
    """The message, then the end of the failure text when it says more."""
    details = case.details
    if not details or details == case.message:
        return clip(case.message, ANNOTATION_CHARS)
    room = max(ANNOTATION_CHARS - len(case.message) - 2, 200)
    tail = details if len(details) <= room else "…" + details[-(room - 1) :]
    return clip(f"{case.message}\n\n{tail}", ANNOTATION_CHARS)


def annotate_tests(reporter: GitHubReporter, tests: TestTally, *, reserve: int = 0) -> int:
    """One error annotation per failed case, within what GitHub shows; returns how many were written.

    `reserve` error annotations are kept free for the runner's own (the job's failure), so
    that one is never the one GitHub drops. The rest are counted in one warning, which
    GitHub shows from a budget of its own.
    """
    budget = max(0, min(MAX_ERROR_ANNOTATIONS, MAX_ERROR_ANNOTATIONS - reporter.errors_emitted - reserve))
    shown = tests.failures[:budget]
    for case in shown:
        verb = "errored" if case.kind == "error" else "failed"
        reporter.annotate(
            "error",
            _annotation_text(case),
            title=f"{case.name} {verb}",
            file=case.file or "",
            line=case.line,
        )
    more = len(tests.failures) - len(shown)
    if more:
        reporter.annotate(
            "warning", f"{more} more failed test{'s' if more != 1 else ''}: see the job summary"
        )
    return len(shown)


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in the log."""
    run = 3
    while "`" * run in text:
        run += 1
    return "`" * run


def _node_hours(outcome: Outcome) -> str:
    hours = outcome.node_hours
    if hours is None or outcome.nodes is None or outcome.elapsed is None:
        return MISSING
    figure = f"{hours:.2f}" if hours >= 10 else f"{hours:.4f}"
    nodes = f"{outcome.nodes} node{'s' if outcome.nodes != 1 else ''}"
    return f"{figure} ({nodes} {_TIMES} {format_duration(outcome.elapsed)})"


def _cell(text: str, limit: int = SUMMARY_MESSAGE_CHARS) -> str:
    """Text made safe for one Markdown table cell: no HTML, no column breaks, one line."""
    cut = clip(text.replace("\r", "").strip(), limit)
    return html.escape(cut, quote=False).replace("|", "&#124;").replace("\n", "<br>")


def render_tests(tests: TestTally, *, limit: int = SUMMARY_TESTS_BYTES) -> str:
    """Counts, then the failed cases with their messages, within `limit` bytes."""
    if not tests.reports:
        globs = ", ".join(f"`{_cell(g, 200)}`" for g in tests.globs[:20])
        head = f"\n#### Tests\n\nNo JUnit report was read ({globs or 'no glob'}).\n"
    else:
        icon = "\u274c" if tests.failures else "\u2705"
        head = (
            f"\n#### {icon} Tests\n\n| Tests | Passed | Failed | Errors | Skipped | Time |\n"
            "|---:|---:|---:|---:|---:|---:|\n"
            f"| {tests.tests} | {tests.passed} | {tests.failed} | {tests.errors} | {tests.skipped} "
            f"| {format_test_time(tests.time)} |\n"
        )
    notes = [f"\n\u26a0\ufe0f Not read: {_cell(note)}\n" for note in tests.unreadable]
    rows = [
        f"| {_cell(case.name, 200)} | {_cell(case.location or case.report, 200)} | {_cell(case.message)} |\n"
        for case in tests.failures
    ]
    if rows:
        rows.insert(0, f"\n**Failed tests** ({len(rows)})\n\n| Test | Where | Message |\n|---|---|---|\n")
    closing = "\n_{more} more failed tests: see the JUnit reports in the artifacts._\n"
    parts = [head, *notes, *rows]
    used = 0
    for index, part in enumerate(parts):
        size = len(part.encode("utf-8"))
        if used + size + len(closing) + 20 > limit:
            more = len(tests.failures) - max(0, index - len(notes) - 2)
            shown = "".join(parts[:index])
            return shown + (closing.format(more=more) if rows and more > 0 else "")
        used += size
    return "".join(parts)


def render_summary(
    outcome: Outcome, log_tail: str, *, tests: TestTally | None = None, limit: int = SUMMARY_LIMIT
) -> str:
    """A Markdown table, the tests' counts and failures, and the end of the log, within GitHub's 1 MiB."""
    icon = "✅" if outcome.passed else "❌"
    rows = [
        ("System", outcome.system),
        ("Job", outcome.job_id),
        ("State", outcome.state),
        ("Exit code", MISSING if outcome.exit_code is None else str(outcome.exit_code)),
        ("Elapsed", format_duration(outcome.elapsed) if outcome.elapsed is not None else MISSING),
        ("Node-hours", _node_hours(outcome)),
        ("Queue wait", format_duration(outcome.queue_wait) if outcome.queue_wait is not None else MISSING),
        ("Working directory", outcome.working_dir),
        ("Output", outcome.output_path or ""),
    ]
    table = "\n".join(
        f"| {name} | {value.replace('|', '&#124;').replace(chr(10), ' ')} |" for name, value in rows
    )
    head = f"### {icon} firecrest-ci: {outcome.reason}\n\n| | |\n|---|---|\n{table}\n"
    if tests is not None:
        room = limit - len(head.encode("utf-8")) - 400
        head += render_tests(tests, limit=max(0, min(SUMMARY_TESTS_BYTES, room)))
    tail_bytes = log_tail.encode("utf-8")[-SUMMARY_LOG_BYTES:]
    budget = limit - len(head.encode("utf-8")) - 200
    tail = tail_bytes[-max(budget, 0) :].decode("utf-8", errors="ignore")
    if not tail.strip():
        return head
    fence = _fence(tail)
    return (
        f"{head}\n<details><summary>End of the job log</summary>\n\n"
        f"{fence}text\n{tail.rstrip()}\n{fence}\n\n</details>\n"
    )


def write_summary(path: str | None, text: str, redactor: Redactor) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(redactor(text))


def github_env(name: str) -> str:
    return os.environ.get(name, "").strip()


def workspace_path() -> Path:
    return Path(github_env("GITHUB_WORKSPACE") or os.getcwd())
