"""Report back to GitHub as one check run per run (App mode), through PyGithub.

The check run is named like the status context (`firecrest-ci/cpu`), carries the
run's id as `external_id` and links to the run's page. It goes `queued` ->
`in_progress` -> `completed`, always the same check run: its id is recorded on
the run, and before creating one the reporter looks for a check run of the
commit with that name and external id, so a worker that died between GitHub's
create and the record adopts it instead of making a second.

GitHub appends annotations on every update and takes at most 50 per request, so
the final report sends them in batches, starting after those the check run
already has: a post cut short resumes where it stopped, and a repeated one adds
none twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from github import Auth, Github, GithubException
from github.CheckRun import CheckRun
from github.Repository import Repository
from urllib3.util.retry import Retry

from middleware.sources.base import Annotation, ReportFailed, RunDetails, Status
from middleware.sources.github.comments import post_comment

#: GitHub takes at most 50 annotations per create or update.
ANNOTATIONS_PER_REQUEST = 50
MAX_TITLE = 1000
TRIES = 3
BACKOFF = 0.5
#: How many of a commit's check runs of one name a look-up reads.
LOOKUP_DEPTH = 100
#: Run states that end a run, each with the conclusion its check run gets.
CONCLUSIONS = {"success": "success", "failed": "failure", "canceled": "cancelled"}
#: The run ended `error` because it could not start in time (see runs.steps._failed).
TIMED_OUT_PREFIX = "could not start within"


T = TypeVar("T")


class CheckRunNotPosted(ReportFailed):
    """GitHub did not take the check run; the caller retries later."""


def phase(run_state: str | None) -> str:
    """The check run status for a run state."""
    if run_state in (None, "queued", "mirrored"):
        return "queued"
    if run_state in ("pending", "running"):
        return "in_progress"
    return "completed"


def conclusion(status: Status) -> str:
    """The conclusion of a finished run's check run."""
    if status.run_state in CONCLUSIONS:
        return CONCLUSIONS[status.run_state]
    if status.run_state == "error" and status.description.startswith(TIMED_OUT_PREFIX):
        return "timed_out"
    if status.run_state == "action_required":
        return "action_required"
    return "failure"  # error: the run could not be carried out


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def annotation_json(annotation: Annotation) -> dict[str, str | int]:
    found: dict[str, str | int] = {
        "path": annotation.path,
        "start_line": annotation.start_line,
        "end_line": annotation.end_line,
        "annotation_level": annotation.level,
        "message": annotation.message,
    }
    if annotation.title:
        found["title"] = annotation.title
    return found


def output_of(status: Status) -> dict[str, Any]:
    """The check run's output (without annotations): title and summary, and the log excerpts."""
    details: RunDetails | None = status.details
    title = (details.title if details else status.description)[:MAX_TITLE] or status.context
    if details is None:
        link = f"\n\n[Run details]({status.url})" if status.url else ""
        return {"title": title, "summary": f"{status.description}{link}"}
    output: dict[str, Any] = {"title": title, "summary": details.summary or status.description}
    if details.text:
        output["text"] = details.text
    return output


def batches(annotations: tuple[Annotation, ...], skip: int) -> list[list[dict[str, str | int]]]:
    """The annotations not yet on the check run, in requests of at most 50."""
    rest = [annotation_json(a) for a in annotations[skip:]]
    return [rest[i : i + ANNOTATIONS_PER_REQUEST] for i in range(0, len(rest), ANNOTATIONS_PER_REQUEST)]


class CheckRunReporter:
    """Check runs and pull request comments on GitHub, as a GitHub App installation."""

    def __init__(self, api_url: str, *, write_interval: float = 1.0, timeout: int = 10) -> None:
        self.api_url = api_url
        self._write_interval = write_interval
        self._timeout = timeout
        #: A final post is a look-up, a create or update and follow-up annotation batches.
        self.max_seconds: float = 6 * TRIES * (timeout + write_interval) + BACKOFF * (2**TRIES)
        # Reads are retried on 5xx and 429; writes only when they never reached GitHub (a PATCH
        # repeated is harmless, but one with annotations would add them twice).
        self._retry = Retry(
            total=TRIES - 1,
            backoff_factor=BACKOFF,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
        )

    def post(self, token: str, repository: str, sha: str, status: Status) -> int:
        """Create or update the run's check run; returns its id."""
        return self._call(token, repository, sha, status, lambda repo: self._post(repo, sha, status))

    def posted(self, token: str, repository: str, sha: str, status: Status) -> bool:
        """Whether the check run already says all of `status` (its phase, conclusion, annotations)."""

        def look(repo: Repository) -> bool:
            found = self._find(repo, sha, status)
            if found is None or found.status != phase(status.run_state):
                return False
            if found.status == "completed" and found.conclusion != conclusion(status):
                return False
            wanted = len(status.details.annotations) if status.details else 0
            return int(found.output.annotations_count or 0) >= wanted

        return self._call(token, repository, sha, status, look)

    def comment(self, token: str, repository: str, number: int, body: str) -> None:
        post_comment(self.api_url, token, repository, number, body)

    # -- the work --------------------------------------------------------------------------

    def _post(self, repo: Repository, sha: str, status: Status) -> int:
        found = self._find(repo, sha, status)
        stage = phase(status.run_state)
        fields: dict[str, Any] = {"status": stage, "output": output_of(status)}
        if status.url:
            fields["details_url"] = status.url
        details = status.details
        started = _time(details.started_at) if details else None
        if stage != "queued" and started is not None:
            fields["started_at"] = started
        if stage == "completed":
            fields["conclusion"] = conclusion(status)
            completed = _time(details.completed_at) if details else None
            if completed is not None and (started is None or completed >= started):
                fields["completed_at"] = completed
        annotations = details.annotations if details and stage == "completed" else ()
        already = int(found.output.annotations_count or 0) if found is not None else 0
        pending = batches(annotations, already)
        if pending:
            fields["output"] = {**fields["output"], "annotations": pending[0]}
        if found is None:
            found = repo.create_check_run(
                name=status.context,
                head_sha=sha,
                external_id=str(status.run_id) if status.run_id is not None else "",
                **fields,
            )
        else:
            found.edit(**fields)
        for batch in pending[1:]:
            found.edit(output={**output_of(status), "annotations": batch})
        return int(found.id)

    def _find(self, repo: Repository, sha: str, status: Status) -> CheckRun | None:
        """The run's check run: by its recorded id, else by name and external id on the commit."""
        if status.check_run_id is not None:
            try:
                found = repo.get_check_run(status.check_run_id)
                if found.head_sha == sha:
                    return found
            except GithubException as error:
                if error.status != 404:
                    raise
        if status.run_id is None:
            return None
        runs = repo.get_commit(sha).get_check_runs(check_name=status.context, filter="all")
        for index, check_run in enumerate(runs):
            if index >= LOOKUP_DEPTH:
                break
            if check_run.external_id == str(status.run_id):
                return check_run
        return None

    def _call(
        self, token: str, repository: str, sha: str, status: Status, work: Callable[[Repository], T]
    ) -> T:
        client = Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            retry=self._retry,
            timeout=self._timeout,
            seconds_between_writes=self._write_interval,
            lazy=True,
        )
        stage = phase(status.run_state)
        try:
            return work(client.get_repo(repository))
        except GithubException as error:
            raise CheckRunNotPosted(
                f"GitHub answered {error.status} to the {stage} check run {status.context} for {sha[:12]}"
            ) from None
        except OSError as error:
            raise CheckRunNotPosted(f"GitHub unreachable ({type(error).__name__})") from None
        finally:
            client.close()
