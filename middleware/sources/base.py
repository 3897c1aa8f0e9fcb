"""The interface every source provider implements, and what crosses it.

A provider turns one webhook request into the source-neutral `Event` the policy
decides on, pins a pull (or merge) request's head when a comment asks for a run,
says what the mirror fetches for a run, and reports back. The intake, the run's
life and the registry only ever talk to a provider through this interface, so a
provider is one package under `middleware/sources/`.

Events are normalised on the way in: pull request actions are GitHub's words
(`opened`, `synchronize`, `reopened`, `closed`), comments are `created`, refs are
full (`refs/heads/...`, `refs/tags/...`), SHAs are full 40-hex (a provider that
sends short ones resolves them first), and user ids are the provider's stable ids:
GitHub's and GitLab's numbers, Bitbucket's account UUIDs (`{...}`), never logins,
which can be renamed and taken over. A registration belongs to one provider, so an
id is only ever compared with ids of the same provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from werkzeug.datastructures import Headers

from middleware.domain import CommentEvent, Event

#: A request's headers: the web request's own (case-insensitive) or a plain mapping in tests.
HeaderMap = Mapping[str, str] | Headers


class Refusal(Exception):
    """A delivery refused before anything is stored: an HTTP status, a readable text, an outcome."""

    def __init__(self, status: int, text: str, outcome: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.outcome = outcome


class MalformedPayload(ValueError):
    """The payload lacks a field the event needs, or has one of the wrong type (400)."""


class PinUnavailable(RuntimeError):
    """The provider could not be asked for the request's head now; redeliver later (503)."""


class PullRequestGone(LookupError):
    """The provider says there is no such pull or merge request: a final answer, nothing runs."""


class ReportFailed(RuntimeError):
    """A status or comment was not taken; the caller records it and tries again later."""


@dataclass(frozen=True)
class Delivery:
    """What a provider read off one webhook request, before its signature is checked."""

    #: The provider's own event name (`X-GitHub-Event`, `X-Gitlab-Event`, `X-Event-Key`).
    event: str
    #: The provider's delivery id: the same on a redelivery, so a redelivery is a duplicate.
    id: str
    #: The repository's full name as registered (`owner/name`, `group/sub/project`);
    #: None when the payload names none (the intake answers 400, or 202 for a ping).
    repository: str | None
    payload: Any
    #: Whether any string in the payload may hold a NUL character (PostgreSQL cannot store it).
    may_hold_nul: bool = True


@dataclass(frozen=True)
class Annotation:
    """One line-level finding (a failed JUnit case) for a check run; the path is repository-relative."""

    path: str
    start_line: int
    end_line: int
    #: notice, warning or failure.
    level: str
    message: str
    title: str = ""


@dataclass(frozen=True)
class RunDetails:
    """What a check run shows beyond a status: built from the GitLab pipeline, secrets masked."""

    title: str
    #: Markdown: the jobs table.
    summary: str
    #: Markdown: the failed jobs' last log lines.
    text: str = ""
    annotations: tuple[Annotation, ...] = ()
    #: ISO 8601 times of the pipeline's start and end, when known.
    started_at: str | None = None
    completed_at: str | None = None


@dataclass(frozen=True)
class Status:
    """One commit status, in the service's words; each provider maps the state to its own."""

    #: pending, success, failure or error.
    state: str
    #: `<prefix>/<pipeline>`: one status per pipeline on a commit.
    context: str
    description: str
    url: str | None
    #: The pull (merge) request the run is for, if any: GitLab files a fork's commit under the
    #: merge request's ref, not under a branch of the project.
    pull_request: int | None = None
    #: For reporters that keep one object per run (GitHub check runs): the run's id and state
    #: (queued ... success, failed, canceled, error), the id of its check run once recorded, and
    #: the details to show (None: the description alone). Status reporters ignore them.
    run_id: int | None = None
    run_state: str | None = None
    check_run_id: int | None = None
    details: RunDetails | None = None


@dataclass(frozen=True)
class FetchSpec:
    """What the mirror fetches for a run: a full ref at `url` (None: the registered clone URL)
    that must contain `sha`, or the SHA alone when `ref` is None."""

    ref: str | None
    sha: str | None
    url: str | None = None
    #: A CA bundle to trust for `url` (a self-managed instance's own CA), or None.
    ca_file: str | None = None


class Reporter(Protocol):
    """Reports back to the source: commit statuses and pull request comments."""

    #: The longest one post or one look-up can take, every try and pause included.
    max_seconds: float

    def post(self, token: str, repository: str, sha: str, status: Status) -> int | None:
        """Post `status` on the commit; raises ReportFailed. Returns the id of the check run it
        went to, for reporters that keep one per run (None for commit statuses)."""

    def posted(self, token: str, repository: str, sha: str, status: Status) -> bool:
        """Whether this exact status is among the commit's newest; raises ReportFailed."""

    def comment(self, token: str, repository: str, number: int, body: str) -> None:
        """Comment on pull or merge request `number`; raises ReportFailed."""


class Source(Protocol):
    """One source provider (GitHub, GitLab, Bitbucket Cloud)."""

    #: The registration's `provider` and the webhook path's last part.
    name: str
    #: How people call it, for texts: "GitHub", "GitLab", "Bitbucket".
    title: str
    #: The headers carrying the event name and the delivery id, and the one proving the secret.
    event_header: str
    delivery_header: str
    proof: str
    #: Where the payload names the repository, for texts (`repository.full_name`).
    name_field: str
    #: The event names the provider acts on (others are counted as "other" in the metrics).
    events: frozenset[str]
    #: The event a sender uses to test a hook (answered 202 even without a repository), or None.
    ping_event: str | None

    def read(self, headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
        """Event name, delivery id and repository name off the request; raises Refusal (400)."""

    def verify(self, headers: HeaderMap, body: bytes, secret: str) -> bool:
        """Whether the request proves it knows the registration's webhook secret."""

    def parse(self, delivery: Delivery) -> Sequence[Event]:
        """The source-neutral events (one, or one per ref for a push of several); pure.
        Raises MalformedPayload."""

    def complete(self, event: Event, token: str) -> Event:
        """The event with what its payload lacks read from the provider (full SHAs for short
        ones); the event as it is when nothing is missing. Bounded: a web worker waits on it.
        Raises PinUnavailable or PullRequestGone."""

    def pin(self, event: CommentEvent, token: str) -> CommentEvent:
        """The comment's pull request head SHA and base branch, read from the provider now;
        raises PullRequestGone or PinUnavailable. Bounded: a web worker waits on it."""

    def fetch_spec(
        self, ref: str, sha: str, pr_number: int | None, repository: str, clone_url: str, token: str
    ) -> FetchSpec:
        """What the mirror fetches for a run of `ref` (a branch name, `refs/tags/v1`, `pr-12`, a
        SHA) at `sha`. May ask the provider (a worker, not a web request, waits on it); raises
        ReportFailed-like errors as PinUnavailable or PullRequestGone."""

    def reporter(self) -> Reporter:
        """The reporter for this provider, built from the service's settings."""
