"""Commands for the workers (mirror cleanups, project syncs), kept until their effect is recorded.

A row is written in the same transaction as what caused it. The dispatcher in
each worker hands due rows to Celery; the task marks the row picked (due again
one lease later, should it die), then done when its work is done, or postpones
it with a backoff when it failed. A hand-out still waiting in the queue is
repeated only when it is known lost (see middleware.runs.handout), and nothing is
marked done because the broker merely took it. Rows are claimed with `SKIP
LOCKED` on PostgreSQL, so several dispatchers share them. Every task is
idempotent: it may run more than once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, or_, select, update

from middleware.db import Database
from middleware.logs import logger
from middleware.models import OutboxItem, utcnow
from middleware.runs.handout import SAFETY
from middleware.runs.schedule import aware, backoff

BATCH = 200


def add(db: Database, task: str, payload: dict[str, Any]) -> None:
    """Queue a command for the workers (it is handed out within a second)."""
    with db.session() as session:
        session.add(OutboxItem(task=task, payload=payload, due_at=utcnow()))


def publish_due(db: Database, celery: Any, lease: float, epoch: str, *, limit: int = BATCH) -> int:
    """Hand due rows to the queue (claimed first); returns how many went out."""
    now = utcnow()
    with db.session() as session:
        query = (
            select(OutboxItem)
            .where(OutboxItem.done_at.is_(None), OutboxItem.due_at <= now)
            .order_by(OutboxItem.due_at, OutboxItem.id)
            .limit(limit)
        )
        if db.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        items = [(item.id, item.task, item.payload) for item in session.scalars(query)]
        if not items:
            return 0
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_([i for i, _, _ in items]))
            .values(
                due_at=now + dt.timedelta(seconds=lease * SAFETY), published_at=now, epoch=epoch, picked=False
            )
        )
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for item_id, task, payload in items:
                celery.send_task(
                    task, args=[payload], kwargs={"outbox_id": item_id}, producer=producer, retry=False
                )
                sent += 1
    except Exception as error:  # noqa: BLE001 - any broker failure: the rest are due again at once
        logger().warning("outbox publish failed; will retry", extra={"error": type(error).__name__})
        with db.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([i for i, _, _ in items[sent:]]))
                .values(due_at=now, last_error=f"broker: {type(error).__name__}")
            )
    return sent


@contextmanager
def settling(
    db: Database, outbox_id: int | None, *, lease: float, backoff_max: float, window: float
) -> Iterator[None]:
    """Mark the row picked, then done when the block succeeds; postpone it when it fails.

    A row still failing `window` seconds after it was written is given up (done, with its
    last error kept), so a command that can never succeed does not come back for ever.
    """
    if outbox_id is not None:
        with db.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == outbox_id)
                .values(picked=True, due_at=utcnow() + dt.timedelta(seconds=lease))
            )
    try:
        yield
    except Exception as error:
        if outbox_id is not None:
            _postpone(db, outbox_id, error, backoff_max, window)
        raise
    if outbox_id is not None:
        with db.session() as session:
            session.execute(update(OutboxItem).where(OutboxItem.id == outbox_id).values(done_at=utcnow()))


def repeat_lost(db: Database, epoch: str) -> int:
    """The broker lost its queue: rows handed out in older epochs and not taken up are due now."""
    with db.session() as session:
        done = session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.done_at.is_(None),
                OutboxItem.picked.is_(False),
                OutboxItem.published_at.is_not(None),
                or_(OutboxItem.epoch.is_(None), OutboxItem.epoch != epoch),
            )
            .values(due_at=utcnow())
        )
        return int(getattr(done, "rowcount", 0) or 0)


def _postpone(db: Database, outbox_id: int, error: BaseException, backoff_max: float, window: float) -> None:
    now = utcnow()
    with db.session() as session:
        item = session.get(OutboxItem, outbox_id)
        if item is None or item.done_at is not None:
            return
        item.attempts += 1
        item.last_error = f"{type(error).__name__}: {error}"[:500]
        created = aware(item.created_at) or now
        if (now - created).total_seconds() > window:
            item.done_at = now
            logger().error(
                "outbox command given up",
                extra={"outbox_id": outbox_id, "task": item.task, "error": item.last_error},
            )
        else:
            item.due_at = now + dt.timedelta(seconds=backoff(item.attempts, backoff_max))


def backlog(db: Database) -> tuple[int, dt.datetime | None]:
    """How many rows wait, and since when."""
    with db.session() as session:
        count, oldest = session.execute(
            select(func.count(OutboxItem.id), func.min(OutboxItem.created_at)).where(
                OutboxItem.done_at.is_(None)
            )
        ).one()
        return int(count), aware(oldest)
