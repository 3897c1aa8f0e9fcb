"""Work done once per interval across all workers, without celery beat: a claim in the database.

Every worker runs the dispatcher, so each would start the same periodic job. Instead, each
asks `claim(name, interval)` now and then, and only the one whose compare-and-set moves the
job's next time forward does it. The claim is an outbox row that is never handed out (it is
born done), keyed by its task name `periodic:<name>`, so no table is needed for it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from middleware.db import Database
from middleware.models import OutboxItem, utcnow

PREFIX = "periodic:"


def claim(db: Database, name: str, interval: float, *, now: dt.datetime | None = None) -> bool:
    """True for exactly one caller per `interval` seconds across every process on `db`."""
    now = now or utcnow()
    task = f"{PREFIX}{name}"
    with db.session() as session:
        found = session.scalar(select(func.min(OutboxItem.id)).where(OutboxItem.task == task))
    if found is None:
        # Committed before the claim below: workers racing here make two rows, and all of
        # them claim the lowest one only.
        with db.session() as session:
            session.add(OutboxItem(task=task, payload={}, created_at=now, due_at=now, done_at=now))
        with db.session() as session:
            found = session.scalar(select(func.min(OutboxItem.id)).where(OutboxItem.task == task))
    with db.session() as session:
        done = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == found, OutboxItem.due_at <= now)
            .values(due_at=now + dt.timedelta(seconds=interval), published_at=now)
        )
        return bool(getattr(done, "rowcount", 0))
