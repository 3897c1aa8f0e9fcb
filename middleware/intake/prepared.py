"""One statement prepared once per PostgreSQL connection and run through libpq's own
PQexecPrepared (psycopg's documented `pq` layer): the statement the intake runs per delivery.

psycopg's cursor layer (adapting each parameter, its own cache of prepared statements, its
wait loop) cost 120 us of client CPU per delivery write, libpq's call on the same connection
55 us (benchmarks/webhook_ack.py, README "Acknowledgement throughput"). The parameters are
values the intake already holds (text, an integer, a timestamp), sent in PostgreSQL's text
format and typed by the statement itself. Failures come back as psycopg's own exceptions
(`errors.error_from_result`), as they would from a cursor, so callers handle them the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import psycopg

#: What a parameter may be: each is sent as text, None as NULL.
Parameter = str | int | dt.datetime | None
#: SQLSTATE invalid_sql_statement_name: the statement is gone from the session (DISCARD ALL).
_NOT_PREPARED = b"26000"


class PreparedStatement:
    """`text`, with PostgreSQL's `$n` placeholders, prepared as `name` on each connection it runs
    on (remembered in the pool entry's `info`, which is cleared with a replaced connection)."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name.encode()
        self.text = text.encode()
        self._key = f"prepared:{name}"

    def execute(
        self, driver: psycopg.Connection[Any], info: MutableMapping[str, Any], parameters: Sequence[Parameter]
    ) -> None:
        """Run it once with `parameters`; raises psycopg.Error as a cursor would."""
        from psycopg import pq  # here: only the PostgreSQL path needs the driver

        # None is NULL, as psycopg's own cursors pass it (its stubs list bytes only).
        values = cast("list[bytes]", [as_text(value) for value in parameters])
        pgconn = driver.pgconn
        if info.get(self._key) is not pgconn:
            self._prepare(driver)
            info[self._key] = pgconn
        result = pgconn.exec_prepared(self.name, values)
        if (
            result.status != pq.ExecStatus.COMMAND_OK
            and result.error_field(pq.DiagnosticField.SQLSTATE) == _NOT_PREPARED
        ):
            self._prepare(driver)
            result = pgconn.exec_prepared(self.name, values)
        _check(driver, result)

    def _prepare(self, driver: psycopg.Connection[Any]) -> None:
        _check(driver, driver.pgconn.prepare(self.name, self.text))


def as_text(value: Parameter) -> bytes | None:
    """A parameter in PostgreSQL's text format. NUL cannot be sent as text: refused as psycopg
    refuses it (DataError), where libpq would cut the value short at it."""
    import psycopg

    if value is None:
        return None
    if isinstance(value, bool):  # an int to Python, not to PostgreSQL
        raise TypeError("a boolean parameter has no text form here")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TypeError("timestamps are sent with their time zone")
        return value.isoformat().encode()
    if isinstance(value, int):
        return str(value).encode()
    text = value.encode()
    if b"\x00" in text:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return text


def _check(driver: psycopg.Connection[Any], result: Any) -> None:
    from psycopg import errors, pq

    if result.status == pq.ExecStatus.COMMAND_OK:
        return
    error = errors.error_from_result(result, encoding=driver.info.encoding)
    if driver.pgconn.status == pq.ConnStatus.BAD and not isinstance(error, errors.OperationalError):
        # The connection is gone (a server restart): what a cursor raises then.
        raise errors.OperationalError(str(error)) from error
    raise error
