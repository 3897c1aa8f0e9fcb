"""When each run is driven next: the database is the schedule, the broker only carries it.

An accepted trigger is written as a Run in the intake's own transaction, due at
once. A dispatcher in every worker hands due runs to Celery as `(run id,
ticket)`; the worker that takes one up marks it picked and due again one lease
later, so a worker that dies mid-step is covered, and a hand-out still waiting
in the queue is repeated only when it is known lost (see middleware.runs.handout).
The worker settles the run's next check (none once nothing is left, the
reconcile interval while its pipeline runs, a backoff after a failure) only if
no newer hand-out or hook poke happened meanwhile. Tickets let a worker skip a
message that a newer hand-out replaced.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from middleware.db import Database
from middleware.logs import logger
from middleware.models import Run, utcnow
from middleware.runs.handout import SAFETY

ADVANCE_RUN = "firecrest_ci.advance_run"
BATCH = 200


def run_row(trigger: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The Run columns of one trigger (as the policy's Trigger, in dict form)."""
    return {
        "repository_id": trigger["repository_id"],
        "pipeline_name": trigger["pipeline"],
        "sha": trigger["sha"],
        "trigger_kind": trigger["kind"],
        "attempt": trigger.get("attempt") or 1,
        "requested_by": trigger.get("requested_by"),
        "ref": trigger["ref"],
        "pr_number": trigger.get("pr_number"),
        "variables": trigger.get("variables") or {},
        "reason": trigger.get("reason", ""),
        "state": "queued",
        "created_at": now,
        "updated_at": now,
        "next_check_at": now,
        "ticket": 0,
    }


def insert_runs(connection: Connection, triggers: Iterable[dict[str, Any]]) -> None:
    """Record triggers as due runs, inside the caller's transaction; a known run key is kept as is."""
    now = utcnow()
    rows = [run_row(t, now) for t in triggers]
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Run).on_conflict_do_nothing(
        index_elements=["repository_id", "pipeline_name", "sha", "trigger_kind", "attempt"]
    )
    connection.execute(statement, rows)


def record_run(db: Database, trigger: dict[str, Any]) -> int:
    """Record one trigger as a run (once per key) and return the run's id."""
    with db.engine.begin() as connection:
        insert_runs(connection, [trigger])
        found = connection.scalar(
            select(Run.id).where(
                Run.repository_id == trigger["repository_id"],
                Run.pipeline_name == trigger["pipeline"],
                Run.sha == trigger["sha"],
                Run.trigger_kind == trigger["kind"],
                Run.attempt == (trigger.get("attempt") or 1),
            )
        )
    assert found is not None
    return int(found)


def dispatch_due(db: Database, celery: Any, lease: float, epoch: str, *, limit: int = BATCH) -> int:
    """Hand the runs that are due to the queue, each with a new ticket; returns how many.

    The claim (new ticket; due again only after SAFETY leases unless taken up) commits before
    the messages go out, so a worker never sees a message before its ticket. Runs whose
    message could not be sent are made due again at once.
    """
    now = utcnow()
    with db.session() as session:
        query = (
            select(Run.id).where(Run.next_check_at <= now).order_by(Run.next_check_at, Run.id).limit(limit)
        )
        if db.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return 0
        session.execute(
            update(Run)
            .where(Run.id.in_(ids))
            .values(
                ticket=Run.ticket + 1,
                next_check_at=now + dt.timedelta(seconds=lease * SAFETY),
                dispatched_at=now,
                dispatch_epoch=epoch,
            )
        )
        tickets = {
            row[0]: row[1] for row in session.execute(select(Run.id, Run.ticket).where(Run.id.in_(ids)))
        }
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for run_id in ids:
                celery.send_task(ADVANCE_RUN, args=[run_id, tickets[run_id]], producer=producer, retry=False)
                sent += 1
    except Exception as error:  # noqa: BLE001 - any broker failure: the rest are due again at once
        logger().warning("could not hand runs to the queue", extra={"error": type(error).__name__})
        with db.session() as session:
            session.execute(update(Run).where(Run.id.in_(ids[sent:])).values(next_check_at=now))
    return sent


def pick(db: Database, run_id: int, ticket: int, lease: float) -> bool:
    """A worker takes up a hand-out: False if a newer one replaced it (skip the message).

    From now on it is due again one lease later unless the worker settles it first.
    """
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.ticket == ticket)
            .values(picked_ticket=ticket, next_check_at=utcnow() + dt.timedelta(seconds=lease))
        )
        return bool(getattr(done, "rowcount", 0))


def repeat_lost(db: Database, epoch: str) -> int:
    """The broker lost its queue: hand-outs of older epochs still waiting are due at once."""
    with db.session() as session:
        done = session.execute(
            update(Run)
            .where(
                Run.next_check_at.is_not(None),
                Run.ticket > Run.picked_ticket,
                or_(Run.dispatch_epoch.is_(None), Run.dispatch_epoch != epoch),
            )
            .values(next_check_at=utcnow())
        )
        return int(getattr(done, "rowcount", 0) or 0)


def settle(db: Database, run_id: int, ticket: int | None, next_check_at: dt.datetime | None) -> bool:
    """Set when the run is looked at next, unless a newer hand-out or a poke came meanwhile."""
    with db.session() as session:
        statement = update(Run).where(Run.id == run_id)
        if ticket is not None:
            statement = statement.where(Run.ticket == ticket)
        done = session.execute(statement.values(next_check_at=next_check_at))
        return bool(getattr(done, "rowcount", 0))


def poke(db: Database, gitlab_pipeline_id: int, *, repository_id: int, pipeline: str) -> int | None:
    """GitLab says a pipeline of this mirror project changed: make its run due now (its id, if any)."""
    with db.session() as session:
        run_id = session.scalar(
            select(Run.id).where(
                Run.gitlab_pipeline_id == gitlab_pipeline_id,
                Run.repository_id == repository_id,
                Run.pipeline_name == pipeline,
            )
        )
        if run_id is None:
            return None
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(ticket=Run.ticket + 1, picked_ticket=Run.ticket + 1, next_check_at=utcnow())
        )
        return int(run_id)


def backoff(attempts: int, cap: float, base: float = 1.0) -> float:
    """Seconds before the next attempt: doubling from `base`, capped, with jitter."""
    delay: float = min(cap, base * 2 ** min(attempts, 30))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


def aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; every stored timestamp is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)
