"""Engine and session factory, built from settings by the app factory (no globals)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """SQLite gets WAL and a busy timeout so web workers and Celery can share it."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


class Database:
    """Owns the engine; hands out sessions that commit or roll back as a unit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit: Engine | None = None

    @property
    def autocommit(self) -> Engine:
        """A second pool, for writes that are one statement each (the webhook intake's).

        Its connections are in autocommit mode from the start, so a statement costs one round
        trip: no BEGIN and COMMIT, and no ping before each use as `engine` does. A caller tries
        again once when a connection that died idle fails (`DBAPIError.connection_invalidated`;
        the pool has then dropped its other connections too). Made on first use, so processes
        that never write this way (Celery workers) open no connection for it. Nothing is ever open
        on them to roll back, so the pool returns them without a reset.
        """
        if self._autocommit is None:
            self._autocommit = create_engine(
                self.url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
            )
        return self._autocommit

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit is not None:
            self._autocommit.dispose()
