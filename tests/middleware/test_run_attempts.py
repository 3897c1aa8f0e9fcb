"""A new attempt is a new run of the same key with the next number; redeliveries still dedupe."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from middleware.db import Database
from middleware.migrate import upgrade
from middleware.models import Repository, Run, RunAction
from middleware.runs.attempts import new_attempt
from middleware.runs.schedule import record_run


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    database = Database(url)
    with database.session() as session:
        session.add(
            Repository(
                full_name="o/r",
                clone_url="https://github.com/o/r.git",
                webhook_secret_enc="x",
                notification_token_enc="x",
                firecrest_client_id="c",
                firecrest_client_secret_enc="x",
            )
        )
    return database


TRIGGER = {"repository_id": 1, "pipeline": "cpu", "sha": "a" * 40, "kind": "push", "ref": "refs/heads/main"}


def test_restart_makes_the_next_attempt_and_records_who(db: Database) -> None:
    first = record_run(db, TRIGGER)
    assert record_run(db, TRIGGER) == first  # a redelivery finds the run it made
    second = new_attempt(db, first, "alice")
    third = new_attempt(db, second, "operator", action="rerequested")
    assert len({first, second, third}) == 3
    with db.session() as session:
        runs = {r.id: r for r in session.scalars(select(Run))}
        assert [runs[i].attempt for i in (first, second, third)] == [1, 2, 3]
        assert runs[second].requested_by == "alice" and runs[second].state == "queued"
        assert runs[second].next_check_at is not None
        actions = session.scalars(select(RunAction).order_by(RunAction.id)).all()
        assert [(a.run_id, a.action, a.actor, a.new_run_id) for a in actions] == [
            (first, "restart", "alice", second),
            (second, "rerequested", "operator", third),
        ]
    assert record_run(db, TRIGGER) == first  # attempt 1 is still what the delivery made


def test_an_unknown_run_is_refused(db: Database) -> None:
    with pytest.raises(LookupError):
        new_attempt(db, 99, "alice")
