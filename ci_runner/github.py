"""GitHub Actions plumbing: workflow commands, outputs, state and the job summary.

The remote log is wrapped in `::stop-commands::<random token>`, so a job that
prints `::add-mask::` or `::error::` cannot drive the workflow. The runner's
own commands (masks, errors) briefly resume command processing with the
token, which the job cannot guess.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ci_runner.durations import format_duration
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.result import Outcome

#: GitHub refuses step summaries above 1 MiB.
SUMMARY_LIMIT = 1024 * 1024
SUMMARY_LOG_BYTES = 60 * 1024


def escape_data(value: str) -> str:
    """Workflow-command message escaping, as in @actions/core."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class GitHubReporter(Reporter):
    """Console output plus workflow commands; the live log is a collapsed group."""

    def __init__(self, redactor: Redactor, *, out: TextIO | None = None, err: TextIO | None = None) -> None:
        super().__init__(redactor, out=out, err=err)
        self._stop_token: str | None = None

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
        self._command(f"::error title=firecrest-ci::{escape_data(self.redactor(message))}")

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


def outputs_for(outcome: Outcome) -> dict[str, str]:
    return {
        "job_id": outcome.job_id,
        "state": outcome.state,
        "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
        "output_path": outcome.output_path or "",
        "working_dir": outcome.working_dir,
    }


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in the log."""
    run = 3
    while "`" * run in text:
        run += 1
    return "`" * run


def render_summary(outcome: Outcome, log_tail: str, *, limit: int = SUMMARY_LIMIT) -> str:
    """A Markdown table and the end of the log, kept within GitHub's 1 MiB."""
    icon = "✅" if outcome.passed else "❌"
    rows = [
        ("System", outcome.system),
        ("Job", outcome.job_id),
        ("State", outcome.state),
        ("Exit code", "" if outcome.exit_code is None else str(outcome.exit_code)),
        ("Elapsed", format_duration(outcome.elapsed) if outcome.elapsed is not None else ""),
        ("Working directory", outcome.working_dir),
        ("Output", outcome.output_path or ""),
    ]
    table = "\n".join(
        f"| {name} | {value.replace('|', '&#124;').replace(chr(10), ' ')} |" for name, value in rows
    )
    head = f"### {icon} firecrest-ci: {outcome.reason}\n\n| | |\n|---|---|\n{table}\n"
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
