"""Several statements in one round trip: psycopg's pipeline mode inside the use case's own transaction.

A check reads five things about one user; sent one by one they cost five round trips and five passes
through SQLAlchemy's result machinery. Pipelined on the same connection, in the same transaction and
snapshot, they cost one round trip, and the rows come back as the driver decoded them (numeric as
Decimal, exactly as through SQLAlchemy: a text() statement has no result types to apply).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, NamedTuple, cast

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, TextClause
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

# Where a unit of work leaves its transaction settings for its first statement to carry (db.unit_of_work).
PENDING = "tokens_pending_settings"


class Statement(NamedTuple):
    """A statement and its parameters, by the names its text uses (`:u`)."""

    sql: TextClause
    params: Mapping[str, Any]


class _Compiled(NamedTuple):
    sql: str
    processors: dict[str, Any]


@lru_cache
def _compiled(sql: TextClause, dialect: Dialect) -> _Compiled:
    """The driver's text of a statement and its typed parameters' converters (a JSONB one, say), once each."""
    compiled = sql.compile(dialect=dialect)
    processors: dict[str, Any] = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return _Compiled(compiled.string, processors)


def fetch_all(conn: Connection, statements: Sequence[Statement]) -> list[list[dict[str, Any]]]:
    """Every statement's rows, as dicts, sent and answered in one round trip.

    Transaction settings a unit of work left pending go first, in the same round trip. A driver error is
    raised as SQLAlchemy's (`_errors_as_sqlalchemy`).
    """
    pending: Statement | None = conn.info.pop(PENDING, None)
    if pending is not None:
        return fetch_all(conn, [pending, *statements])[1:]
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    compiled = [_compiled(statement.sql, conn.dialect) for statement in statements]
    params = [_driver_params(c, s.params) for c, s in zip(compiled, statements, strict=True)]
    with _errors_as_sqlalchemy(conn, driver):
        with driver.pipeline():
            cursors = [driver.cursor(row_factory=dict_row) for _ in compiled]
            for cursor, c, values in zip(cursors, compiled, params, strict=True):
                cursor.execute(c.sql, values)
        return [cursor.fetchall() for cursor in cursors]


def stream_rows(conn: Connection, statement: Statement, *, batch: int) -> Iterator[dict[str, Any]]:
    """A statement's rows, as dicts, `batch` at a time, in the use case's transaction.

    SQLAlchemy streams through a server-side cursor (DECLARE), and PostgreSQL never runs a cursor's query
    in parallel; a portal run to its end, its rows sent in chunks, can be. Memory stays one batch (one row
    with a libpq older than 17, which cannot send chunks).
    """
    pending: Statement | None = conn.info.pop(PENDING, None)
    if pending is not None:
        fetch_all(conn, [pending])
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    compiled = _compiled(statement.sql, conn.dialect)
    with _errors_as_sqlalchemy(conn, driver), driver.cursor(row_factory=dict_row) as cursor:
        size = batch if psycopg.capabilities.has_stream_chunked() else 1
        yield from cursor.stream(compiled.sql, _driver_params(compiled, statement.params), size=size)


def _driver_params(compiled: _Compiled, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: compiled.processors[name](value) if name in compiled.processors else value
        for name, value in params.items()
    }


@contextmanager
def _errors_as_sqlalchemy(conn: Connection, driver: psycopg.Connection[Any]) -> Iterator[None]:
    """A driver error raised as SQLAlchemy's, as `conn.execute` would raise it, so the services turn a
    timeout or an unreachable database into the same friendly reply; a broken connection is invalidated
    so the pool never hands it out again."""
    try:
        yield
    except psycopg.Error as error:
        invalidated = conn.dialect.is_disconnect(cast(Any, error), cast(Any, driver), None)
        if invalidated:
            conn.invalidate(error)
        raise DBAPIError.instance(
            None, None, error, psycopg.Error, connection_invalidated=invalidated, dialect=conn.dialect
        ) from error
