"""An accepted delivery, written in one transaction: the delivery, its runs, the pull request
heads it saw and its outbox rows.

The answer to GitHub waits for this write, and its cost was mostly round trips to the
database: BEGIN, one INSERT per table, COMMIT. On PostgreSQL the whole write is one
statement instead (data-modifying CTEs fed with JSON arrays), which PostgreSQL runs
atomically on its own, so any delivery is stored in one round trip. Elsewhere (SQLite,
the embedded default) it is one INSERT per table between BEGIN and COMMIT. Either way a
delivery id already stored fails the whole write with an IntegrityError, so nothing of a
redelivery is kept, and a run or a head already known is kept as it is (ON CONFLICT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from middleware.db import Database
from middleware.intake.approvals import record_head
from middleware.intake.prepared import PreparedStatement
from middleware.models import Delivery, OutboxItem, utcnow
from middleware.runs.schedule import insert_runs, run_row

#: Run columns taken from `run_row` through the JSON array; the rest are the write's moment.
RUN_COLUMNS = (
    *("repository_id", "pipeline_name", "sha", "trigger_kind", "attempt", "requested_by", "ref", "pr_number"),
    *("variables", "reason", "state", "ticket"),
)
RUN_TIMES = ("created_at", "updated_at", "next_check_at")

#: One statement, one transaction, with PostgreSQL's own placeholders: prepared once per connection
#: and run by libpq (no SQLAlchemy compilation, no psycopg adaptation per delivery).
#: $1-$5 the delivery (id, event, repository_id, outcome, detail), $6 the moment of the write,
#: $7-$9 JSON arrays of heads, outbox rows and runs. Columns the ORM fills from Python defaults
#: are spelled out; tests/middleware/test_webhook_store.py compares the rows with the per-table path's.
POSTGRES_STATEMENT = """
WITH delivery AS (
    INSERT INTO deliveries (id, event, repository_id, outcome, detail, received_at)
    VALUES ($1, $2, $3, $4, $5, $6)
), heads AS (
    INSERT INTO pull_request_heads (repository_id, pr_number, sha, recorded_at)
    SELECT h.repository_id, h.pr_number, h.sha, $6
    FROM json_to_recordset(CAST($7 AS json)) AS h(repository_id integer, pr_number integer, sha text)
    ON CONFLICT (repository_id, pr_number, sha) DO NOTHING
), outbox AS (
    INSERT INTO outbox (delivery_id, task, payload, created_at, due_at, picked, attempts)
    SELECT o.delivery_id, o.task, o.payload, $6, $6, false, 0
    FROM json_to_recordset(CAST($8 AS json)) AS o(delivery_id text, task text, payload json)
)
INSERT INTO runs (repository_id, pipeline_name, sha, trigger_kind, attempt, requested_by, ref, pr_number,
                  variables, reason, state, ticket, created_at, updated_at, next_check_at,
                  picked_ticket, attempts, status_seq, posted_seq, tried_seq, unreported)
SELECT r.repository_id, r.pipeline_name, r.sha, r.trigger_kind, r.attempt, r.requested_by, r.ref, r.pr_number,
       r.variables, r.reason, r.state, r.ticket, $6, $6, $6,
       0, 0, 0, 0, 0, false
FROM json_to_recordset(CAST($9 AS json)) AS r(
    repository_id integer, pipeline_name text, sha text, trigger_kind text, attempt integer,
    requested_by text, ref text, pr_number integer, variables json, reason text, state text, ticket integer)
ON CONFLICT (repository_id, pipeline_name, sha, trigger_kind, attempt) DO NOTHING
"""

#: The delivery's values, in the order of $1-$5.
DELIVERY_COLUMNS = ("id", "event", "repository_id", "outcome", "detail")
#: POSTGRES_STATEMENT, prepared on each connection of the autocommit pool.
STORE_DELIVERY = PreparedStatement("firecrest_ci_store_delivery", POSTGRES_STATEMENT)


@dataclass
class Accepted:
    """The rows of one accepted delivery, values already fit to store (see intake.storable)."""

    #: deliveries: id, event, repository_id, outcome, detail (received_at is the write's moment).
    delivery: dict[str, Any]
    #: Trigger payloads, one run each (see schedule.run_row).
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: Pull request heads seen: repository_id, pr_number, sha.
    heads: list[dict[str, Any]] = field(default_factory=list)
    #: Outbox commands: delivery_id, task, payload.
    outbox: list[dict[str, Any]] = field(default_factory=list)


def store(db: Database, accepted: Accepted, *, one_statement: bool | None = None) -> None:
    """Write `accepted` in one transaction; raises IntegrityError for a delivery id already stored.

    `one_statement` defaults to whether the database is PostgreSQL; tests force either path.
    """
    if one_statement is None:
        one_statement = db.engine.dialect.name == "postgresql"
    if one_statement:
        _store_in_one_statement(db, accepted)
    else:
        _store_per_table(db, accepted)


def _store_in_one_statement(db: Database, accepted: Accepted) -> None:
    import psycopg  # here: only the PostgreSQL path needs the driver

    now = utcnow()
    runs = []
    for trigger in accepted.runs:
        row = run_row(trigger, now)
        if row.keys() != {*RUN_COLUMNS, *RUN_TIMES}:  # run_row grew a column this statement lacks
            raise RuntimeError(f"store.RUN_COLUMNS is out of step with schedule.run_row: {sorted(row)}")
        runs.append({name: row[name] for name in RUN_COLUMNS})
    delivery = accepted.delivery
    parameters = (
        *(delivery[name] for name in DELIVERY_COLUMNS),
        now,
        _json_text(accepted.heads),
        _json_text(accepted.outbox),
        _json_text(runs),
    )
    # Autocommit, no ping: one round trip, prepared once per connection and run by libpq itself
    # (SQLAlchemy's execution layer, then psycopg's cursor, each cost as much CPU as the rest of
    # the write: intake/prepared.py). A connection that died idle (PostgreSQL restarted)
    # fails before anything is stored; the pool is then emptied and the second try gets a new
    # one. If it died after the commit, the second try finds the delivery id taken and the
    # intake answers `duplicate`. Driver errors leave as SQLAlchemy's, like every other write.
    engine = db.autocommit
    for attempt in (1, 2):
        connection = engine.raw_connection()
        try:
            driver = cast(psycopg.Connection[Any], connection.dbapi_connection)
            STORE_DELIVERY.execute(driver, connection.info, parameters)
            connection.close()
            return
        except engine.dialect.loaded_dbapi.Error as error:
            gone = engine.dialect.is_disconnect(error, connection.dbapi_connection, None)
            if gone:
                connection.invalidate(error)
                engine.dispose()  # its other idle connections died the same way
            else:
                connection.close()
            if attempt == 2 or not gone:
                raise DBAPIError.instance(
                    POSTGRES_STATEMENT,
                    None,
                    error,
                    engine.dialect.loaded_dbapi.Error,
                    hide_parameters=True,
                    connection_invalidated=gone,
                    dialect=engine.dialect,
                ) from error


def _json_text(rows: list[dict[str, Any]]) -> str:
    """A JSON array as text for `CAST($n AS json)`, written as the per-table path's JSON columns
    are (json.dumps: a `json` column keeps the text as it is given)."""
    return json.dumps(rows) if rows else "[]"


def _store_per_table(db: Database, accepted: Accepted) -> None:
    with db.engine.begin() as connection:
        now = utcnow()
        connection.execute(insert(Delivery), {**accepted.delivery, "received_at": now})
        insert_runs(connection, accepted.runs)
        for head in accepted.heads:
            record_head(connection, head["repository_id"], head["pr_number"], head["sha"])
        if accepted.outbox:
            connection.execute(
                insert(OutboxItem),
                [{**row, "created_at": now, "due_at": now, "attempts": 0} for row in accepted.outbox],
            )
