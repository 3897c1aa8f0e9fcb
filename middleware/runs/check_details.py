"""What a run's check run shows: the jobs table, failed jobs' last log lines, JUnit annotations.

Read from the run's GitLab pipeline when a report is about to go out, and masked
here, once, before anything leaves: every text that reaches GitHub passes
through `mask` with the pipeline's secret CI variables, the FirecREST client
secret and the tokens. `render` is pure, so what a check run says is tested
without GitLab.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import gitlab
import requests
from gitlab.v4.objects import Project

from middleware.logs import logger
from middleware.managed_gitlab.jobs import CaseFailure, JobView, jobs_of, junit_failures, log_tail
from middleware.masking import mask
from middleware.runs.reporting import FINAL_STATES
from middleware.sources.base import Annotation, RunDetails

#: GitHub's limit on a check run's summary and text (characters).
MAX_TEXT = 65535
#: Log lines shown per failed job, and how many failed jobs get a log excerpt.
TAIL_LINES = 30
MAX_TAILS = 10
#: Annotations sent at most (GitHub takes 50 per request; the reporter splits them).
MAX_ANNOTATIONS = 500
FAILED_JOB_STATES = frozenset({"failed"})
#: ANSI escapes (colours, GitLab's section markers) would show as noise in Markdown.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")
_ICON = {
    "success": "✅",
    "failed": "❌",
    "canceled": "⏹️",
    "skipped": "⏭️",
    "running": "🔄",
    "pending": "⏳",
    "created": "⏳",
    "manual": "✋",
}


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return " ".join(text.split()).replace("|", "\\|")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _fence(text: str) -> str:
    """A code block no backtick run in `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 40] + "\n\n… (cut to GitHub's size limit)"


def jobs_table(jobs: Sequence[JobView]) -> str:
    if not jobs:
        return "_No jobs yet._"
    rows = ["| Job | Stage | State | Duration |", "| --- | --- | --- | --- |"]
    for job in jobs:
        name = f"[{_cell(job.name)}]({job.web_url})" if job.web_url else _cell(job.name)
        icon = _ICON.get(job.status, "")
        state = f"{icon} {_cell(job.status)}".strip()
        rows.append(f"| {name} | {_cell(job.stage)} | {state} | {_duration(job.duration)} |")
    return "\n".join(rows)


def annotations_of(failures: Iterable[CaseFailure], secrets: Sequence[str]) -> tuple[Annotation, ...]:
    """One failure annotation per failed case that names a file (GitHub needs a path)."""
    found: list[Annotation] = []
    for failure in failures:
        if not failure.file:
            continue
        line = failure.line or 1
        title = f"{failure.classname}.{failure.name}" if failure.classname else failure.name
        message = failure.message.strip() or f"{failure.status}: {title}"
        found.append(
            Annotation(
                path=failure.file.removeprefix("./"),
                start_line=line,
                end_line=line,
                level="failure",
                message=mask(_cut(message, 4000), secrets),
                title=mask(title, secrets)[:255],
            )
        )
        if len(found) >= MAX_ANNOTATIONS:
            break
    return tuple(found)


def render(
    jobs: Sequence[JobView],
    tails: dict[int, str],
    failures: Sequence[CaseFailure],
    *,
    title: str,
    pipeline_url: str | None,
    secrets: Sequence[str],
) -> RunDetails:
    """The check run's output from what GitLab said; every text masked. Pure."""
    failed = [job for job in jobs if job.status in FAILED_JOB_STATES]
    counts = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}"
    if failed:
        counts += f", {len(failed)} failed"
    link = f" · [GitLab pipeline]({pipeline_url})" if pipeline_url else ""
    summary = f"{counts}{link}\n\n{jobs_table(jobs)}"
    if failures:
        summary += f"\n\n{len(failures)} failed test{'s' if len(failures) != 1 else ''} in the JUnit reports."
    parts = []
    for job in failed:
        if job.id in tails:
            tail = _ANSI.sub("", tails[job.id])
            parts.append(f"### {_cell(job.name)}: last lines of the log\n\n{_fence(tail)}")
    started = [job.started_at for job in jobs if job.started_at]
    finished = [job.finished_at for job in jobs if job.finished_at]
    return RunDetails(
        title=mask(title, secrets),
        summary=_cut(mask(summary, secrets)),
        text=_cut(mask("\n\n".join(parts), secrets)),
        annotations=annotations_of(failures, secrets),
        started_at=min(started) if started else None,
        completed_at=max(finished) if finished else None,
    )


def build(
    project: Project,
    pipeline_id: int,
    *,
    title: str,
    pipeline_url: str | None,
    secrets: Sequence[str],
    final: bool,
) -> RunDetails:
    """Read the pipeline's jobs (and, once it is over, the failed jobs' logs and the JUnit
    failures) from GitLab and render them."""
    jobs = jobs_of(project, pipeline_id)
    tails: dict[int, str] = {}
    failures: list[CaseFailure] = []
    if final:
        for job in [j for j in jobs if j.status in FAILED_JOB_STATES][:MAX_TAILS]:
            tails[job.id] = log_tail(project, job.id, lines=TAIL_LINES)
        try:
            failures = junit_failures(project, pipeline_id)
        except gitlab.exceptions.GitlabGetError as error:
            if error.response_code != 404:  # no test report (older GitLab, or none kept): no annotations
                raise
    return render(jobs, tails, failures, title=title, pipeline_url=pipeline_url, secrets=secrets)


def for_pipeline(
    project: Project, pipeline_id: int | None, pipeline_url: str | None, secrets: Sequence[str]
) -> Callable[[str, str], RunDetails | None]:
    """What `reporting.deliver` calls, with the run's state and description, when it posts.

    GitLab unreachable or the pipeline gone: the check run goes out with its description
    alone rather than waiting, since the report matters more than its table.
    """

    def details(run_state: str, description: str) -> RunDetails | None:
        if pipeline_id is None:
            return None
        try:
            return build(
                project,
                pipeline_id,
                title=description,
                pipeline_url=pipeline_url,
                secrets=secrets,
                final=run_state in FINAL_STATES,
            )
        except (gitlab.exceptions.GitlabError, requests.RequestException) as error:
            logger().warning(
                "check run details unavailable",
                extra={"pipeline_id": pipeline_id, "error": type(error).__name__},
            )
            return None

    return details
