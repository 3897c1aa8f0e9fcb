"""Move outbox rows to the queue: at least once, in order, retried until it works.

The webhook request only writes rows (one transaction) and answers; a
publisher thread in each Celery worker process sends them in batches, and a
beat task sweeps up as a fallback. A batch is claimed with `SKIP LOCKED` on
PostgreSQL so several publishers share the work; a row is marked only after
it was sent, so a crash sends it again rather than never, and every consumer
task is idempotent for that.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from sqlalchemy import select

from middleware.db import Database
from middleware.logs import logger
from middleware.models import OutboxItem, utcnow

BATCH = 200
#: How often the worker's publisher looks for new rows.
INTERVAL = 0.2


def publish_pending(db: Database, celery: Any, *, limit: int = BATCH, retry: bool = False) -> int:
    """Send a batch of unpublished rows; returns how many went out. Stops at a broker failure."""
    sent = 0
    with db.session() as session:
        query = (
            select(OutboxItem).where(OutboxItem.published_at.is_(None)).order_by(OutboxItem.id).limit(limit)
        )
        if db.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        items = session.scalars(query).all()
        if not items:
            return 0
        try:
            with celery.producer_or_acquire() as producer:
                for item in items:
                    item.attempts += 1
                    celery.send_task(
                        item.task,
                        args=[item.payload],
                        task_id=f"outbox-{item.id}",
                        retry=retry,
                        producer=producer,
                    )
                    item.published_at = utcnow()
                    sent += 1
        except Exception as error:  # noqa: BLE001 - any broker failure: keep the rest, try later
            failed = items[sent]
            failed.last_error = f"{type(error).__name__}: {error}"[:500]
            logger().warning(
                "outbox publish failed; will retry",
                extra={"outbox_id": failed.id, "error": type(error).__name__},
            )
    return sent


class Publisher:
    """A daemon thread that keeps publishing; started in each Celery worker process."""

    def __init__(self, db: Database, celery: Any, interval: float = INTERVAL) -> None:
        self._db = db
        self._celery = celery
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = publish_pending(self._db, self._celery, retry=True) == BATCH
            except Exception as error:  # noqa: BLE001 - the database may be briefly away; keep going
                logger().warning("outbox publisher failed", extra={"error": type(error).__name__})
                busy = False
            if not busy:
                self._stop.wait(self._interval)


def backlog(db: Database) -> tuple[int, dt.datetime | None]:
    """How many rows wait, and since when."""
    with db.session() as session:
        rows = session.scalars(select(OutboxItem.created_at).where(OutboxItem.published_at.is_(None))).all()
        return len(rows), min(rows) if rows else None
