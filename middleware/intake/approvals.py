"""What a `run` comment approves: only a PR head this service saw arrive before the comment.

GitHub gives no trustworthy "pushed at" time and commit dates can be forged,
so the intake records every PR head it sees in pull_request deliveries, with
its own clock. A comment approves the pinned head only if it was recorded at
or before the comment's `created_at`. Otherwise nothing runs: the head is
recorded now (so a fresh comment approves it) and the PR is asked for one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from middleware.db import Database
from middleware.domain import CommentEvent
from middleware.models import PullRequestHead, utcnow


def record_head(connection: Connection, repository_id: int, pr_number: int, sha: str) -> None:
    """Inside the delivery's transaction; the first sighting of a head is kept."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(PullRequestHead)
        .values(repository_id=repository_id, pr_number=pr_number, sha=sha, recorded_at=utcnow())
        .on_conflict_do_nothing(index_elements=["repository_id", "pr_number", "sha"])
    )


def _parse(moment: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def judge(db: Database, repository_id: int, event: CommentEvent) -> CommentEvent:
    """The event with `head_seen_before_comment` set from this service's own records."""
    made = _parse(event.created_at)
    if event.head_sha is None or made is None:
        return dataclasses.replace(event, head_seen_before_comment=False)
    with db.session() as session:
        recorded = session.scalar(
            select(PullRequestHead.recorded_at).where(
                PullRequestHead.repository_id == repository_id,
                PullRequestHead.pr_number == event.issue_number,
                PullRequestHead.sha == event.head_sha,
            )
        )
    if recorded is not None and recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=dt.UTC)
    return dataclasses.replace(event, head_seen_before_comment=recorded is not None and recorded <= made)
