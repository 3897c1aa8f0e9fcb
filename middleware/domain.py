"""Plain, immutable domain types shared by the middleware's steps.

webhook -> Event -> policy -> Trigger -> queue. Nothing here does I/O or
knows about Flask, SQLAlchemy or Celery, so the deciding code that uses it
is cheap to test against hostile input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TriggerKind(StrEnum):
    PUSH = "push"
    PULL_REQUEST = "pull_request"
    COMMENT = "comment"
    API = "api"


#: A provider's stable user id: GitHub's and GitLab's numbers, Bitbucket's account UUIDs.
UserId = int | str


# -- registrations, as the policy sees them -----------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    """One pipeline of a registered repository."""

    name: str
    entrypoint: str
    system: str
    #: GitHub's numeric ids of the users trusted for it; None means "use the repository's".
    trusted_users: frozenset[UserId] | None = None
    #: CI-enabled branches (exact names or fnmatch globs); None means the repository's default.
    branches: tuple[str, ...] | None = None
    #: Tag pushes trigger only when a tag matches one of these globs; empty means off.
    tags: tuple[str, ...] = ()
    #: Cancel the older running pipeline when a new SHA arrives for the same branch or PR.
    cancel_superseded: bool = True
    id: int | None = None
    #: The only variable names a comment or API trigger may set for it; None: any name not reserved.
    allowed_variables: frozenset[str] | None = None


@dataclass(frozen=True)
class RepositoryConfig:
    """A registered repository with its pipelines."""

    id: int
    full_name: str
    #: GitHub's numeric user ids: a login can be renamed and taken over by someone else.
    trusted_users: frozenset[UserId] = frozenset()
    branches: tuple[str, ...] = ("main",)
    pipelines: tuple[PipelineConfig, ...] = ()

    def trusted_for(self, pipeline: PipelineConfig) -> frozenset[UserId]:
        return self.trusted_users if pipeline.trusted_users is None else pipeline.trusted_users

    def branches_for(self, pipeline: PipelineConfig) -> tuple[str, ...]:
        return self.branches if pipeline.branches is None else pipeline.branches


# -- events: what a webhook delivery means ---------------------------------------


@dataclass(frozen=True)
class PingEvent:
    repository: str | None
    zen: str = ""


@dataclass(frozen=True)
class PushEvent:
    repository: str
    ref: str
    after: str
    before: str
    deleted: bool
    sender: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None


@dataclass(frozen=True)
class PullRequestEvent:
    repository: str
    action: str
    number: int
    author: str
    head_sha: str
    head_ref: str
    head_repository: str | None
    base_ref: str
    sender: str
    #: The author's numeric GitHub id (trust follows ids; `author` is for display).
    author_id: UserId | None = None

    @property
    def from_fork(self) -> bool:
        return self.head_repository != self.repository


@dataclass(frozen=True)
class CommentEvent:
    repository: str
    action: str
    issue_number: int
    is_pull_request: bool
    author: str
    body: str
    #: The PR's head SHA, pinned through the GitHub API by the enrichment
    #: step before the policy runs; None until then.
    head_sha: str | None = None
    #: The PR's base branch, from the same enrichment.
    base_ref: str | None = None
    #: The commenter's numeric GitHub id, and when GitHub says the comment was made.
    author_id: UserId | None = None
    created_at: str = ""
    #: Whether this service saw the pinned head arrive at or before the comment was made
    #: (set by the enrichment from its own records); a comment approves only what was there.
    head_seen_before_comment: bool | None = None


@dataclass(frozen=True)
class OtherEvent:
    """An event type the service does not act on (create, delete, ...)."""

    repository: str | None
    name: str
    action: str | None = None


@dataclass(frozen=True)
class RerunEvent:
    """Someone asked the source to run a commit's checks again (GitHub's "Re-run" on a check run
    or on a check suite): a new attempt of the runs it names, under the same trust rules."""

    repository: str
    head_sha: str
    sender: str
    #: The sender's stable id (trust follows ids).
    sender_id: UserId | None
    #: The id of the App (integration) that made the check run or suite: only ours count.
    app_id: int | None
    #: The run a check run names (its external_id); None for a whole check suite.
    run_id: int | None = None
    #: check_run or check_suite, for texts.
    scope: str = "check_run"


@dataclass(frozen=True)
class RunRef:
    """A recorded run, as the policy sees it when asked to run it again (read by the intake)."""

    id: int
    pipeline: str
    ref: str
    sha: str
    kind: str
    attempt: int
    #: Whether it has ended (a run still going is not run again beside itself).
    finished: bool
    pr_number: int | None = None
    variables: dict[str, str] = field(default_factory=dict)


Event = PingEvent | PushEvent | PullRequestEvent | CommentEvent | RerunEvent | OtherEvent


# -- decisions ------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """Run one pipeline of one repository at one commit."""

    repository_id: int
    pipeline: str
    ref: str
    sha: str
    kind: TriggerKind
    reason: str
    variables: dict[str, str] = field(default_factory=dict)
    pr_number: int | None = None
    #: 1 for what a delivery starts; a re-run asks for the next attempt of a run.
    attempt: int = 1
    #: Who asked for a re-run (their login), for the run's record.
    requested_by: str | None = None

    def key(self) -> tuple[int, str, str, str, int]:
        """Idempotency key of the Run this trigger makes."""
        return (self.repository_id, self.pipeline, self.sha, self.kind.value, self.attempt)


@dataclass(frozen=True)
class MirrorCleanup:
    """A source branch or PR went away: its mirror branch should go too (next issue)."""

    repository_id: int
    ref: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """What the policy made of an event: triggers and cleanups, or why nothing."""

    triggers: tuple[Trigger, ...] = ()
    cleanups: tuple[MirrorCleanup, ...] = ()
    reason: str = ""
    #: A trusted `run` comment that did not approve the PR's current head: ask for a fresh one.
    stale_approval: bool = False

    @property
    def empty(self) -> bool:
        return not self.triggers and not self.cleanups
