"""middleware/intake/store.py: PostgreSQL's one-statement write stores exactly what the
per-table transaction stores, and keeps its properties: a stored delivery id refuses the
whole redelivery, a known run or head is kept as it is, outbox rows reference their delivery."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from middleware.intake.store import Accepted, store
from middleware.models import Delivery, OutboxItem, PullRequestHead, Run

#: Columns that differ between two writes by nature: keys, moments, and what the test varies.
VARYING = {"id", "sha", "delivery_id", "created_at", "updated_at", "next_check_at", "received_at"}
VARYING |= {"recorded_at", "due_at"}


def accepted(repository_id: int, delivery_id: str, sha: str, pr_number: int = 7) -> Accepted:
    trigger = {
        "repository_id": repository_id,
        "sha": sha,
        "ref": "pr-7",
        "reason": "pull request #7 synchronize",
        "variables": {"N": "4", "DEBUG": "1"},
        "pr_number": pr_number,
        "delivery_id": delivery_id,
        "kind": "pull_request",
    }
    return Accepted(
        delivery={
            "id": delivery_id,
            "event": "pull_request",
            "repository_id": repository_id,
            "outcome": "queued",
            "detail": "queued: cpu@0123 (pull request #7 synchronize)",
        },
        runs=[{**trigger, "pipeline": "cpu"}, {**trigger, "pipeline": "gpu"}],
        heads=[{"repository_id": repository_id, "pr_number": pr_number, "sha": sha}],
        outbox=[
            {
                "delivery_id": delivery_id,
                "task": "firecrest_ci.record_cleanup",
                "payload": {"ref": "pr-6", "repository_id": repository_id, "note": "caf\u00e9"},
            }
        ],
    )


def rows(svc, model, **where) -> list[dict]:
    with svc.db.session() as session:
        found = session.scalars(select(model).filter_by(**where)).all()
        return [
            {c.key: getattr(row, c.key) for c in model.__table__.columns if c.key not in VARYING}
            for row in found
        ]


@pytest.fixture
def repository_id(registered) -> int:
    return int(registered["id"])


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_statement_stores_what_the_per_table_transaction_stores(svc, repository_id):
    store(svc.db, accepted(repository_id, "per-table", "a" * 40), one_statement=False)
    store(svc.db, accepted(repository_id, "one-statement", "b" * 40), one_statement=True)
    for model, key in ((Delivery, "id"), (OutboxItem, "delivery_id"), (Run, "sha"), (PullRequestHead, "sha")):
        first = rows(svc, model, **{key: "per-table" if key in ("id", "delivery_id") else "a" * 40})
        second = rows(svc, model, **{key: "one-statement" if key in ("id", "delivery_id") else "b" * 40})
        assert first, model
        assert first == second, model
    with svc.db.engine.connect() as connection:  # JSON columns keep their text: the same text
        variables = dict(connection.execute(text("SELECT sha, variables::text FROM runs")).all())
        payloads = dict(connection.execute(text("SELECT delivery_id, payload::text FROM outbox")).all())
    assert variables["a" * 40] == variables["b" * 40]
    assert payloads["per-table"] == payloads["one-statement"]


def test_a_stored_delivery_id_refuses_the_whole_redelivery(svc, repository_id):
    store(svc.db, accepted(repository_id, "d-1", "c" * 40))
    with pytest.raises(IntegrityError):
        store(svc.db, accepted(repository_id, "d-1", "d" * 40))  # same id, new commit
    assert rows(svc, Run, sha="d" * 40) == []
    assert rows(svc, PullRequestHead, sha="d" * 40) == []
    assert len(rows(svc, OutboxItem, delivery_id="d-1")) == 1


def test_known_runs_and_heads_are_kept_as_they_are(svc, repository_id):
    store(svc.db, accepted(repository_id, "d-1", "e" * 40))
    again = accepted(repository_id, "d-2", "e" * 40)
    for run in again.runs:
        run["reason"] = "something else"
    store(svc.db, again)  # a new delivery of the same commit: stored, its runs are not doubled
    assert {r["reason"] for r in rows(svc, Run, sha="e" * 40)} == {"pull request #7 synchronize"}
    assert len(rows(svc, Run, sha="e" * 40)) == 2
    assert len(rows(svc, PullRequestHead, sha="e" * 40)) == 1
    assert len(rows(svc, Delivery, id="d-2")) == 1


def test_a_delivery_without_runs_heads_or_commands_is_one_row(svc, repository_id):
    delivery_id = str(uuid.uuid4())
    store(
        svc.db, Accepted({**accepted(repository_id, delivery_id, "f" * 40).delivery, "outcome": "no-trigger"})
    )
    assert [r["outcome"] for r in rows(svc, Delivery, id=delivery_id)] == ["no-trigger"]
    assert rows(svc, Run) == []


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_connection_that_died_idle_is_replaced_and_the_delivery_stored(svc, repository_id):
    store(svc.db, accepted(repository_id, "d-1", "1" * 40))
    with svc.db.autocommit.connect() as connection:  # the pooled connection the next write takes
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with svc.db.engine.begin() as connection:  # as a PostgreSQL restart would leave it
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    store(svc.db, accepted(repository_id, "d-2", "2" * 40))
    assert len(rows(svc, Delivery, id="d-2")) == 1
    assert len(rows(svc, Run, sha="2" * 40)) == 2
