"""middleware/intake/prepared.py: the intake's statement, prepared once per PostgreSQL connection
and run by libpq, sends its values as they are and fails as a psycopg cursor fails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from middleware.intake.prepared import PreparedStatement, as_text
from tests.middleware.conftest import postgres_database

INSERT = PreparedStatement("test_insert_note", "INSERT INTO notes (id, body, at, n) VALUES ($1, $2, $3, $4)")


@pytest.fixture
def driver() -> Iterator[psycopg.Connection[Any]]:
    with postgres_database() as url:
        libpq_url = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(libpq_url, autocommit=True) as connection:
            connection.execute("CREATE TABLE notes (id text PRIMARY KEY, body text, at timestamptz, n int8)")
            yield connection


def prepared(driver: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in driver.execute("SELECT name FROM pg_prepared_statements").fetchall()]


def test_values_arrive_as_they_are_and_the_statement_is_prepared_once(driver):
    info: dict[str, Any] = {}
    moment = dt.datetime(2026, 11, 26, 23, 5, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    INSERT.execute(driver, info, ("a", "é ✓ 🚀 'quoted' \\ back", moment, 2**62))
    INSERT.execute(driver, info, ("b", None, None, -7))
    assert prepared(driver) == ["test_insert_note"]
    assert info == {"prepared:test_insert_note": driver.pgconn}
    rows = driver.execute("SELECT id, body, at, n FROM notes ORDER BY id").fetchall()
    assert rows == [("a", "é ✓ 🚀 'quoted' \\ back", moment, 2**62), ("b", None, None, -7)]


def test_a_statement_gone_from_the_session_or_a_new_connection_is_prepared_again(driver):
    info: dict[str, Any] = {}
    INSERT.execute(driver, info, ("a", "x", None, 1))
    driver.execute("DEALLOCATE ALL")
    INSERT.execute(driver, info, ("b", "x", None, 1))
    assert prepared(driver) == ["test_insert_note"]
    # A pool entry whose connection was replaced: `info` names another connection.
    info["prepared:test_insert_note"] = object()
    driver.execute("DEALLOCATE ALL")
    INSERT.execute(driver, info, ("c", "x", None, 1))
    assert driver.execute("SELECT count(*) FROM notes").fetchone() == (3,)


def test_failures_are_psycopgs_own_exceptions(driver):
    info: dict[str, Any] = {}
    INSERT.execute(driver, info, ("a", "x", None, 1))
    with pytest.raises(errors.UniqueViolation) as duplicate:
        INSERT.execute(driver, info, ("a", "y", None, 1))
    assert isinstance(duplicate.value, psycopg.IntegrityError) and duplicate.value.sqlstate == "23505"
    with pytest.raises(errors.NumericValueOutOfRange):
        INSERT.execute(driver, info, ("b", "x", None, 2**64))
    with pytest.raises(errors.UndefinedTable):
        PreparedStatement("test_missing", "INSERT INTO nowhere VALUES ($1)").execute(driver, {}, ("a",))
    assert driver.execute("SELECT id, body FROM notes").fetchall() == [("a", "x")]


def test_a_broken_connection_fails_as_a_disconnect(driver):
    info: dict[str, Any] = {}
    INSERT.execute(driver, info, ("a", "x", None, 1))
    with psycopg.connect(driver.info.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (driver.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        INSERT.execute(driver, info, ("b", "x", None, 1))
    assert driver.closed  # what SQLAlchemy's is_disconnect reads


def test_values_without_a_faithful_text_form_are_refused():
    with pytest.raises(psycopg.DataError, match="NUL"):
        as_text("cut\x00short")
    with pytest.raises(TypeError, match="time zone"):
        as_text(dt.datetime(2026, 11, 26, 12, 0))
    with pytest.raises(TypeError, match="boolean"):
        as_text(True)
    assert as_text(None) is None
    assert as_text(-12) == b"-12"
    assert as_text(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == b"2026-01-02T03:04:05+00:00"
