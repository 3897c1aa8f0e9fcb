"""Database tables (SQLAlchemy 2.0). Columns ending `_enc` hold Fernet ciphertext.

Schema changes go through Alembic (`middleware/migrations`); the metadata
here is what the migrations are checked against in the tests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Repository(Base):
    """A registered source repository. Ids are never reused (AUTOINCREMENT on SQLite too): the
    mirror projects, their CI variables and the mirror cache are named after the id."""

    __tablename__ = "repositories"
    __table_args__ = (
        UniqueConstraint("provider", "full_name"),
        UniqueConstraint("provider", "source_id", name="uq_repositories_provider_source_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), default="github")
    full_name: Mapped[str] = mapped_column(String(200))
    clone_url: Mapped[str] = mapped_column(String(500))
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    notification_token_enc: Mapped[str] = mapped_column(Text)
    firecrest_client_id: Mapped[str] = mapped_column(String(200))
    firecrest_client_secret_enc: Mapped[str] = mapped_column(Text)
    default_account: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: [{"id": <GitHub's numeric user id, or None until resolved>, "login": "<for display>"}]
    trusted_users: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    branches: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The source's visibility on GitHub, read when the token is checked; mirrors follow it.
    source_private: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    #: The provider's own stable id of the repository (GitHub's numeric id), so a rename or a
    #: transfer finds the same registration; None until it is known.
    source_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The GitHub App installation that reports for it (App mode); None in token mode.
    installation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: When its credentials were disabled (the App was removed from it); nothing runs meanwhile.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    pipelines: Mapped[list[Pipeline]] = relationship(
        back_populates="repository", cascade="all, delete-orphan", order_by="Pipeline.id"
    )


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    entrypoint: Mapped[str] = mapped_column(String(500))
    system: Mapped[str] = mapped_column(String(100))
    #: Same shape as Repository.trusted_users; None means the repository's.
    trusted_users: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    branches: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    cancel_superseded: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Encrypted JSON object of secret CI variables.
    variables_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Variable names a comment or API trigger may set for this pipeline; None: any allowed name.
    allowed_variables: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: Encrypted X-Gitlab-Token of this pipeline's mirror project hook (made on first use).
    hook_token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    repository: Mapped[Repository] = relationship(back_populates="pipelines")


class Delivery(Base):
    """One accepted webhook delivery; its id (X-GitHub-Delivery) deduplicates redeliveries."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL"), nullable=True
    )
    outcome: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxItem(Base):
    """A command written in the same transaction as what caused it, handed to Celery until done.

    A row is done when its task has recorded its effect (`done_at`), not when the
    broker took the message: until then it is handed out again whenever `due_at`
    passes (a lease after each hand-out, a backoff after each failure).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_due",
            "due_at",
            sqlite_where=text("done_at IS NULL"),
            postgresql_where=text("done_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=True
    )
    task: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: When it was last handed to the broker.
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The broker epoch it was handed out in (see middleware.runs.handout), and whether a task took it.
    epoch: Mapped[str | None] = mapped_column(String(40), nullable=True)
    picked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    #: When it is handed out (again) unless done by then.
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class PullRequestHead(Base):
    """A PR head commit as the middleware itself saw it arrive (opened/synchronize/reopened).

    A `run` comment approves the PR's head only if it was recorded here at or before the
    comment was made: GitHub gives no trustworthy push time, and commit dates can be forged.
    """

    __tablename__ = "pull_request_heads"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    pr_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """One pipeline run for one (repository, pipeline, sha, trigger kind).

    Written when the trigger is accepted and driven from what is recorded here:
    `next_check_at` says when the workers look at it again (NULL once nothing
    is left to do), `ticket` tells a current hand-out from a stale one (see
    middleware.runs.schedule for when a hand-out is repeated), and the
    `status_*` columns hold the commit status to report, so that reporting
    resumes after any crash and posts each status once (`posted_seq`).
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("repository_id", "pipeline_name", "sha", "trigger_kind", "attempt"),
        Index(
            "ix_runs_next_check_at",
            "next_check_at",
            sqlite_where=text("next_check_at IS NOT NULL"),
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
        Index("ix_runs_gitlab_pipeline_id", "gitlab_pipeline_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    pipeline_name: Mapped[str] = mapped_column(String(100))
    sha: Mapped[str] = mapped_column(String(64))
    trigger_kind: Mapped[str] = mapped_column(String(20))
    #: 1 for what a delivery started; a re-run or a restart of the same commit is the next one,
    #: so it makes a new pipeline while a redelivered webhook still finds the run it made.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: Who asked for it, for display and the run viewer's filter (a login, or `operator`).
    requested_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ref: Mapped[str] = mapped_column(String(300))
    pr_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(30), default="queued")
    gitlab_pipeline_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gitlab_pipeline_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: Why the run ended `error` or `canceled`.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # -- driving it ----------------------------------------------------------------------
    next_check_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ticket: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The ticket a worker took up (a hand-out still in the queue has ticket > picked_ticket),
    #: and when and in which broker epoch the current ticket was handed out.
    picked_ticket: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispatch_epoch: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: Failed attempts in a row, and the last failure (transient: it is tried again).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # -- reporting back --------------------------------------------------------------------
    status_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    status_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    posted_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The status_seq of the last attempt to post: a retry of the same one looks before posting.
    tried_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status_claim_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The final status could not be posted within REPORT_WINDOW.
    unreported: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    #: The GitHub check run that reports it (App mode), once created.
    check_run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    actions: Mapped[list[RunAction]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunAction.id"
    )


class RunAction(Base):
    """Cancel, retry or restart asked for on a run: who and when, shown on the run's page."""

    __tablename__ = "run_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    #: cancel | retry | restart | rerequested
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The run a restart made.
    new_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")

    run: Mapped[Run] = relationship(back_populates="actions")


class AuditEntry(Base):
    """Every change to a registration, from the pages or the API: who, what, when (operators see it).

    Secret values are never written here, only that they changed."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    #: `operator`, or the GitHub login of whoever signed in (with their numeric id in `detail`).
    actor: Mapped[str] = mapped_column(String(200))
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: e.g. repository.create, repository.update, pipeline.create, webhook_secret.rotate
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Installation(Base):
    """A GitHub App installation (App mode), from `installation` events.

    Removing the App disables its repositories' credentials at once (`removed_at`) and purges
    them after the retention period (`purge_after`)."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_login: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(BigInteger)
    account_type: Mapped[str] = mapped_column(String(20), default="User")
    #: GitHub's numeric ids of the repositories the App may see there.
    repository_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    suspended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    purge_after: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class HookRedelivery(Base):
    """A failed App hook delivery the sweep asked GitHub to redeliver, so it is asked once per GUID."""

    __tablename__ = "hook_redeliveries"

    guid: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: GitHub's id of the failed delivery that was redelivered.
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
