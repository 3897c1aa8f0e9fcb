"""Move outbox rows to the queue: at least once, in order, retried until it works.

A row is sent first and marked afterwards, so a crash between the two sends
it again rather than never; every consumer task is idempotent for that.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from middleware.db import Database
from middleware.logs import logger
from middleware.models import OutboxItem, utcnow

BATCH = 100


def publish_pending(db: Database, celery: Any, *, limit: int = BATCH, retry: bool = False) -> int:
    """Send unpublished rows; returns how many went out. Stops at the first broker failure."""
    with db.session() as session:
        items = session.scalars(
            select(OutboxItem).where(OutboxItem.published_at.is_(None)).order_by(OutboxItem.id).limit(limit)
        ).all()
        pending = [(item.id, item.task, item.payload) for item in items]
    sent = 0
    for item_id, task, payload in pending:
        try:
            celery.send_task(task, args=[payload], task_id=f"outbox-{item_id}", retry=retry)
        except Exception as error:  # noqa: BLE001 - any broker failure: keep the row, try later
            with db.session() as session:
                session.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == item_id)
                    .values(
                        attempts=OutboxItem.attempts + 1, last_error=f"{type(error).__name__}: {error}"[:500]
                    )
                )
            logger().warning(
                "outbox publish failed; will retry",
                extra={"outbox_id": item_id, "error": type(error).__name__},
            )
            break
        with db.session() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item_id)
                .values(published_at=utcnow(), attempts=OutboxItem.attempts + 1)
            )
        sent += 1
    return sent


def backlog(db: Database) -> tuple[int, dt.datetime | None]:
    """How many rows wait, and since when (for /readyz and tests)."""
    with db.session() as session:
        rows = session.scalars(select(OutboxItem.created_at).where(OutboxItem.published_at.is_(None))).all()
        return len(rows), min(rows) if rows else None
