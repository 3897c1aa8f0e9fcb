"""The jobs of a managed GitLab pipeline: list, logs (traces) and JUnit failures.

Read-only views used by the check-run report and the run viewer. Logs are read
as a stream and bounded, so a job that printed gigabytes never fills memory.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitlab.v4.objects import Project


@dataclass(frozen=True)
class JobView:
    id: int
    name: str
    stage: str
    status: str
    duration: float | None
    web_url: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class CaseFailure:
    """One failed (or errored) JUnit test case, as GitLab's test report gives it."""

    suite: str
    classname: str
    name: str
    status: str  # "failed" or "error"
    message: str  # the stack trace or system output, possibly empty
    file: str | None
    line: int | None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(attrs: dict[str, Any]) -> float | None:
    value = attrs.get("duration")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    started, finished = _parse_time(attrs.get("started_at")), _parse_time(attrs.get("finished_at"))
    if started is not None and finished is not None:
        return max(0.0, (finished - started).total_seconds())
    return None


def _optional_str(value: Any) -> str | None:
    return str(value) if value else None


def job_view(attrs: dict[str, Any]) -> JobView:
    """A JobView from one job of GitLab's JSON (GET /projects/:id/pipelines/:pid/jobs)."""
    return JobView(
        id=int(attrs["id"]),
        name=str(attrs.get("name") or ""),
        stage=str(attrs.get("stage") or ""),
        status=str(attrs.get("status") or ""),
        duration=_duration(attrs),
        web_url=str(attrs.get("web_url") or ""),
        started_at=_optional_str(attrs.get("started_at")),
        finished_at=_optional_str(attrs.get("finished_at")),
    )


def jobs_of(project: Project, pipeline_id: int) -> list[JobView]:
    """Every job of the pipeline (all pages), oldest first: the order they were created in, stage by
    stage (GitLab lists them newest first)."""
    pipeline = project.pipelines.get(pipeline_id, lazy=True)
    views = [job_view(job.attributes) for job in pipeline.jobs.list(iterator=True)]
    return sorted(views, key=lambda view: view.id)


def _trace_chunks(project: Project, job_id: int) -> Iterator[bytes]:
    job = project.jobs.get(job_id, lazy=True)
    chunks: Iterator[bytes] = job.trace(streamed=True, iterator=True, chunk_size=16_384)
    yield from chunks


def log_tail(project: Project, job_id: int, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last `lines` lines of the job's log, from at most its last `max_bytes` bytes."""
    window: deque[bytes] = deque()
    size = 0
    for chunk in _trace_chunks(project, job_id):
        window.append(chunk)
        size += len(chunk)
        while size - len(window[0]) >= max_bytes:
            size -= len(window.popleft())
    data = b"".join(window)
    cut = len(data) > max_bytes
    data = data[-max_bytes:] if max_bytes > 0 else b""
    if cut:  # the first line is a fragment: a secret cut in half there would escape masking
        data = data.partition(b"\n")[2]
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()[-lines:] if lines > 0 else []
    return "\n".join(kept)


def full_log(project: Project, job_id: int, max_bytes: int = 2_000_000) -> tuple[str, bool]:
    """The job's log from its start, cut at `max_bytes`: (text, truncated)."""
    parts: list[bytes] = []
    size = 0
    truncated = False
    for chunk in _trace_chunks(project, job_id):
        if size + len(chunk) > max_bytes:
            parts.append(chunk[: max_bytes - size])
            truncated = True
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts).decode("utf-8", errors="replace"), truncated


_FILE_LINE = re.compile(r"(?P<file>[\w./\\-]+\.\w+)[:(](?P<line>\d+)")


def _location(case: dict[str, Any], message: str) -> tuple[str | None, int | None]:
    """File from the case's `file` (GitLab reads JUnit's file attribute); line from the trace.

    GitLab's report has no line field, so the line is the last `file:NN` mention of
    that file in the stack trace (pytest and most runners print it there).
    """
    file = _optional_str(case.get("file"))
    matches = list(_FILE_LINE.finditer(message))
    if file is not None:
        for found in reversed(matches):
            if found["file"].endswith(file) or file.endswith(found["file"]):
                return file, int(found["line"])
        return file, None
    if matches:
        return matches[-1]["file"], int(matches[-1]["line"])
    return None, None


def failures_from_report(report: dict[str, Any]) -> list[CaseFailure]:
    """Failed and errored cases from GitLab's test report JSON."""
    found: list[CaseFailure] = []
    for suite in report.get("test_suites") or []:
        if not isinstance(suite, dict):
            continue
        for case in suite.get("test_cases") or []:
            if not isinstance(case, dict) or case.get("status") not in ("failed", "error"):
                continue
            message = str(case.get("stack_trace") or case.get("system_output") or "")
            file, line = _location(case, message)
            found.append(
                CaseFailure(
                    suite=str(suite.get("name") or ""),
                    classname=str(case.get("classname") or ""),
                    name=str(case.get("name") or ""),
                    status=str(case["status"]),
                    message=message,
                    file=file,
                    line=line,
                )
            )
    return found


def junit_failures(project: Project, pipeline_id: int) -> list[CaseFailure]:
    """Failed cases from GET /projects/:id/pipelines/:pid/test_report (empty if no report)."""
    report = project.pipelines.get(pipeline_id, lazy=True).test_report.get()
    return failures_from_report(dict(report.attributes))
