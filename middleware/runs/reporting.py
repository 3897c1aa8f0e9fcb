"""Commit statuses back to the source, each posted once, resumable after any crash.

The run's steps only record the status they want reported (`want`, or `finish`
for the final one, which also ends the run: a compare-and-set, so a run ends
once). `deliver` posts what is wanted and not yet posted, under a short claim
so two workers never post it together. When an earlier attempt at the same
final status may have reached GitHub (the worker died, or the answer was
lost), it looks the status up before posting again: one final status per
commit and context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, update

from middleware.db import Database
from middleware.models import Run, utcnow
from middleware.sources.base import Reporter, RunDetails, Status

FINAL_STATES = ("success", "failed", "canceled", "error")


@dataclass(frozen=True)
class Target:
    """Where a run's statuses go."""

    token: str
    repository: str
    sha: str
    context: str
    #: The pull (merge) request of the run, if any.
    pull_request: int | None = None
    #: The run's page: what the status or check run links to (None: the recorded URL).
    link: str | None = None
    #: For check runs: the details to show, given the run's state and description; called only
    #: when something is about to be posted.
    details: Callable[[str, str], RunDetails | None] | None = None


def claim_seconds(statuses: Reporter) -> float:
    """A claim outlasts the slowest attempt: a look-up and a post, every try included."""
    return 2 * statuses.max_seconds + 2


def want(db: Database, run_id: int, status: str, description: str, url: str | None, **values: object) -> bool:
    """Record a non-final status to report (with other run columns), unless the run has ended."""
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.not_in(FINAL_STATES))
            .values(
                status_seq=Run.status_seq + 1,
                status_state=status,
                status_description=description,
                status_url=url,
                **values,
            )
        )
        return bool(getattr(done, "rowcount", 0))


def finish(
    db: Database,
    run_id: int,
    state: str,
    github_state: str,
    description: str,
    url: str | None,
    *,
    error: str | None = None,
) -> bool:
    """End the run once (the first caller wins) and record its final status to report."""
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.not_in(FINAL_STATES))
            .values(
                state=state,
                error=error,
                finished_at=utcnow(),
                status_seq=Run.status_seq + 1,
                status_state=github_state,
                status_description=description,
                status_url=url,
            )
        )
        return bool(getattr(done, "rowcount", 0))


def deliver(db: Database, statuses: Reporter, run_id: int, target: Target) -> bool:
    """Post the wanted status if it is not posted yet. True when nothing is left to post.

    False means another worker holds the claim. Raises ReportFailed when the source does
    not take it; the claim is then released for the next attempt.
    """
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is None or run.status_seq <= run.posted_seq or run.status_state is None:
            return True
        seq, tried = run.status_seq, run.tried_seq
        state, description, url = run.status_state, run.status_description or "", run.status_url
        final = run.state in FINAL_STATES
        run_state, check_run_id = run.state, run.check_run_id
    now = utcnow()
    with db.session() as session:
        claimed = session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.status_seq == seq,
                or_(Run.status_claim_until.is_(None), Run.status_claim_until < now),
            )
            .values(status_claim_until=now + dt.timedelta(seconds=claim_seconds(statuses)), tried_seq=seq)
        )
        if not getattr(claimed, "rowcount", 0):
            return False
    try:
        token, repository, sha = target.token, target.repository, target.sha
        details = target.details(run_state, description) if target.details is not None else None
        status = Status(
            state, target.context, description, target.link or url, target.pull_request,
            run_id=run_id, run_state=run_state, check_run_id=check_run_id, details=details,
        )  # fmt: skip
        check_run: int | None = None
        if not (final and tried == seq and statuses.posted(token, repository, sha, status)):
            check_run = statuses.post(token, repository, sha, status)
    except BaseException:
        _release(db, run_id, posted=None)
        raise
    _release(db, run_id, posted=seq, check_run_id=check_run)
    return True


def _release(db: Database, run_id: int, *, posted: int | None, check_run_id: int | None = None) -> None:
    with db.session() as session:
        values: dict[str, object] = {"status_claim_until": None}
        if posted is not None:
            values["posted_seq"] = posted
        if check_run_id is not None:
            values["check_run_id"] = check_run_id
        session.execute(update(Run).where(Run.id == run_id).values(**values))
