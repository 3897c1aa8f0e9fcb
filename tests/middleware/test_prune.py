"""`prune`: deliveries, done outbox commands and finished runs past their retention go, in
batches; a run still moving or reporting, a command not done, and a delivery whose command is
not done stay. `--dry-run` counts the same rows and deletes none. On PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from middleware.cli import main
from middleware.db import Database
from middleware.migrate import upgrade
from middleware.models import Delivery, OutboxItem, Repository, Run, RunAction, utcnow
from middleware.settings import Settings
from tests.middleware.conftest import postgres_database

NOW = utcnow()
OLD = NOW - dt.timedelta(days=400)
RECENT = NOW - dt.timedelta(days=1)


@pytest.fixture
def db(tmp_path, monkeypatch) -> Iterator[Database]:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().endswith("_FILE"):
            monkeypatch.delenv(name)
    with postgres_database() as url:
        upgrade(url)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("MIDDLEWARE_SECRET_KEY", "prune-secret-key-0123456789abcdefghijk")
        monkeypatch.setenv("ADMIN_TOKEN", "prune-admin-token-0123")
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        database = Database(url)
        seed(database)
        yield database
        database.dispose()


def run_row(name: str, state: str, finished: dt.datetime | None, **values: object) -> Run:
    columns: dict[str, object] = {"next_check_at": None, "status_seq": 2, "posted_seq": 2, **values}
    return Run(
        repository_id=1,
        pipeline_name="cpu",
        sha=name.ljust(40, "0"),
        trigger_kind="push",
        ref="refs/heads/main",
        state=state,
        created_at=OLD,
        finished_at=finished,
        **columns,
    )


def seed(db: Database) -> None:
    with db.session() as session:
        session.add(
            Repository(
                id=1,
                full_name="o/r",
                clone_url="https://github.com/o/r.git",
                webhook_secret_enc="x",
                notification_token_enc="x",
                firecrest_client_id="c",
                firecrest_client_secret_enc="x",
            )
        )
        session.flush()
        session.add_all(
            [
                Delivery(id="old-alone", event="push", outcome="queued", received_at=OLD),
                Delivery(id="old-waiting", event="push", outcome="queued", received_at=OLD),
                Delivery(id="old-done", event="push", outcome="queued", received_at=OLD),
                Delivery(id="recent", event="push", outcome="queued", received_at=RECENT),
            ]
        )
        session.flush()
        session.add_all(
            [
                OutboxItem(delivery_id="old-waiting", task="t", payload={}, created_at=OLD, done_at=None),
                OutboxItem(delivery_id="old-done", task="t", payload={}, created_at=OLD, done_at=OLD),
                OutboxItem(delivery_id=None, task="t", payload={}, created_at=OLD, done_at=OLD),
                OutboxItem(delivery_id=None, task="t", payload={}, created_at=OLD, done_at=None),
                OutboxItem(delivery_id=None, task="t", payload={}, created_at=RECENT, done_at=RECENT),
            ]
        )
        ended = run_row("ended", "success", OLD)
        session.add_all(
            [
                ended,
                run_row("moving", "running", None, next_check_at=NOW),
                run_row("unposted", "failed", OLD, posted_seq=1),
                run_row("unreported", "error", OLD, posted_seq=1, unreported=True),
                run_row("recent", "success", RECENT),
                run_row("due", "canceled", OLD, next_check_at=NOW),
            ]
        )
        session.flush()
        session.add(RunAction(run_id=ended.id, action="retry", actor="operator"))


def left(db: Database) -> dict[str, list[str]]:
    with db.session() as session:
        return {
            "deliveries": sorted(session.scalars(select(Delivery.id))),
            "outbox": sorted(
                f"{item.delivery_id}:{'done' if item.done_at else 'open'}"
                for item in session.scalars(select(OutboxItem))
            ),
            "runs": sorted(sha.rstrip("0") for sha in session.scalars(select(Run.sha))),
            "actions": [str(n) for n in [session.scalar(select(func.count(RunAction.id)))]],
        }


def test_dry_run_counts_what_prune_then_deletes(db):
    before = left(db)
    dry = CliRunner().invoke(
        main, ["prune", "--dry-run", "--run-retention-days", "90"], catch_exceptions=False
    )
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "would delete 2 done outbox commands",
        "would delete 2 deliveries",
        "would delete 2 finished runs",
    ]
    assert left(db) == before

    done = CliRunner().invoke(
        main, ["prune", "--batch", "1", "--run-retention-days", "90"], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        line.replace("would delete", "deleted") for line in dry.output.splitlines()
    ]
    assert left(db) == {
        "deliveries": ["old-waiting", "recent"],
        "outbox": ["None:done", "None:open", "old-waiting:open"],
        "runs": ["due", "moving", "recent", "unposted"],
        "actions": ["0"],  # the ended run's actions went with it
    }
    again = CliRunner().invoke(main, ["prune", "--run-retention-days", "90"], catch_exceptions=False)
    assert again.output.splitlines() == [
        "deleted 0 done outbox commands",
        "deleted 0 deliveries",
        "deleted 0 finished runs",
    ]


def test_retention_comes_from_the_settings_and_zero_keeps_everything(db, monkeypatch):
    before = left(db)
    monkeypatch.setenv("DELIVERY_RETENTION_DAYS", "0")
    monkeypatch.setenv("RUN_RETENTION_DAYS", "0")
    done = CliRunner().invoke(main, ["prune"], catch_exceptions=False)
    assert done.output.strip() == "nothing to prune: both retentions are 0 (kept for ever)"
    assert left(db) == before
    monkeypatch.setenv("RUN_RETENTION_DAYS", "500")  # older than every row: nothing is past it
    monkeypatch.setenv("DELIVERY_RETENTION_DAYS", "-1")
    refused = CliRunner().invoke(main, ["prune"])
    assert refused.exit_code == 2
    assert "DELIVERY_RETENTION_DAYS: Input should be greater than or equal to 0" in refused.output
    monkeypatch.setenv("DELIVERY_RETENTION_DAYS", "0")
    kept = CliRunner().invoke(main, ["prune"], catch_exceptions=False)
    assert kept.output.strip() == "deleted 0 finished runs"
    assert left(db) == before
