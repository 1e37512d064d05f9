"""Several statements in one round trip: psycopg's pipeline mode inside the use case's own transaction.

A check reads five things about one user; sent one by one they cost five round trips and five passes
through SQLAlchemy's result machinery. Pipelined on the same connection, in the same transaction and
snapshot, they cost one round trip, and the rows come back as the driver decoded them (numeric as
Decimal, exactly as through SQLAlchemy: a text() statement has no result types to apply).

Once the round trips were gone, the driver's own work per statement was most of a check's CPU in this
process, so each statement is sent as the server will see it: its text in PostgreSQL's `$n` form,
encoded once (psycopg would otherwise parse every text longer than 4 KB for placeholders, and encode
and hash every text, on every run), its parameters in that order, and its rows as plain tuples turned
into dicts by column names read once. The cursors are the connection's own, kept with it by the pool.
Statements that open their own transaction (a check's) skip the cursors: they are queued with libpq
and read back in one go (core.store.libpq_pipeline), without a poll of the socket per statement.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, NamedTuple, cast

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg.rows import dict_row, tuple_row
from sqlalchemy import Connection, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from core.store.libpq_pipeline import run_transaction

# Where a unit of work leaves its transaction settings for its first statement to carry (db.unit_of_work).
PENDING = "tokens_pending_settings"
# Where it leaves the BEGIN opening its transaction, for the same statement to carry ahead of them.
PENDING_BEGIN = "tokens_pending_begin"
# Where a read-only unit of work that its last reads may end (`fetch_all(..., ending=True)`) keeps its
# BEGIN and every setting deferred in it, to open the same transaction again for a statement sent after.
REOPEN = "tokens_reopen"
# Sets every transaction-local setting in one statement, whatever their number: one statement text, so
# psycopg prepares it once per connection; the settings as one JSON text, which costs the driver less to
# send than two arrays.
_SET_LOCAL = text("SELECT count(set_config(key, value, true)) FROM jsonb_each_text(CAST(:settings AS jsonb))")
# Where a connection keeps its pipeline cursors (in the pool's record of it: gone with the connection).
_CURSORS = "tokens_pipeline_cursors"
# Where a connection keeps the streams opened on it (stream_rows), until its unit of work closes them.
_STREAMS = "tokens_streams"
# A named placeholder as SQLAlchemy renders a text() for psycopg, or a percent sign it escaped.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


class Statement(NamedTuple):
    """A statement and its parameters, by the names its text uses (`:u`)."""

    sql: TextClause
    params: Mapping[str, Any]


def settings_statement(settings: Mapping[str, str]) -> Statement:
    """The statement setting `settings` for the rest of the transaction only (SET LOCAL semantics)."""
    return _settings_statement(tuple(settings.items()))


@lru_cache(maxsize=64)
def _settings_statement(settings: tuple[tuple[str, str], ...]) -> Statement:
    """Made once per set of settings: every transaction of a use case sets the same ones."""
    return Statement(_SET_LOCAL, {"settings": json.dumps(dict(settings))})


def defer(conn: Connection, settings: Mapping[str, str]) -> None:
    """Leave transaction settings for the transaction's next statement to carry, in its round trip."""
    conn.info.setdefault(PENDING, {}).update(settings)
    if REOPEN in conn.info:
        conn.info[REOPEN][1].update(settings)


def defer_begin(conn: Connection, begin: str, *, reads_may_end: bool = False) -> None:
    """Leave the transaction's BEGIN for its first statement to carry, in its round trip: the driver,
    opening the transaction itself, would wait for its answer first.

    With `reads_may_end` (a read-only unit of work that commits at the end) its last reads may carry the
    COMMIT too (`fetch_all(..., ending=True)`).
    """
    conn.info[PENDING_BEGIN] = _begin_statement(begin)
    if reads_may_end:
        conn.info[REOPEN] = (conn.info[PENDING_BEGIN], {})


@lru_cache
def _begin_statement(begin: str) -> Statement:
    return Statement(text(begin), {})


_COMMIT = Statement(text("COMMIT"), {})


def _opening(info: dict[Any, Any]) -> list[Statement]:
    """What a unit of work left (in its connection's `info`) for the first statement to send ahead of it:
    BEGIN, then the settings."""
    opening: list[Statement] = []
    begin: Statement | None = info.pop(PENDING_BEGIN, None)
    if begin is not None:
        opening.append(begin)
    pending: dict[str, str] | None = info.pop(PENDING, None)
    if pending is not None:
        opening.append(settings_statement(pending))
    return opening


class _Compiled:
    """A statement as sent: `$n` text, the parameter behind each `$n`, typed parameters' converters (a
    JSONB one, say), and the names of its columns once a run has told them (set whole, so threads that
    race to set them set the same)."""

    __slots__ = ("columns", "order", "processors", "query")

    def __init__(self, query: bytes, order: tuple[str, ...], processors: dict[str, Any]) -> None:
        self.query, self.order, self.processors = query, order, processors
        self.columns: tuple[str, ...] | None = None


def _numbered(pyformat: str) -> tuple[str, tuple[str, ...]]:
    """`%(name)s` placeholders as `$n` (a name used twice is one parameter) and `%%` as `%`: the text
    psycopg itself would send for it, and the order of its parameters."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PLACEHOLDER.sub(number, pyformat), tuple(order)


@lru_cache
def _compiled(sql: TextClause, dialect: Dialect) -> _Compiled:
    """A statement's text and converters, worked out once per statement."""
    compiled = sql.compile(dialect=dialect)
    processors: dict[str, Any] = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    query, order = _numbered(compiled.string)
    return _Compiled(query.encode(), order, processors)


def _values(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    processors = compiled.processors
    return [processors[name](params[name]) if name in processors else params[name] for name in compiled.order]


def _dicts(compiled: _Compiled, cursor: psycopg.RawCursor[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """A cursor's rows as dicts; a statement that returns none (BEGIN) has none."""
    result = cursor.pgresult
    if result is None or result.status != ExecStatus.TUPLES_OK:
        return []
    return _as_dicts(compiled, cursor.fetchall(), result, cursor.connection)


def _as_dicts(
    compiled: _Compiled, rows: list[tuple[Any, ...]], result: PGresult, driver: psycopg.Connection[Any]
) -> list[dict[str, Any]]:
    """Rows as dicts by the statement's column names, read off its first result (in the connection's
    encoding) and kept."""
    columns = compiled.columns
    if columns is None:
        encoding = driver.info.encoding
        columns = compiled.columns = tuple(
            (result.fname(i) or b"").decode(encoding) for i in range(result.nfields)
        )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _cursors(
    conn: Connection, driver: psycopg.Connection[Any], count: int
) -> list[psycopg.RawCursor[tuple[Any, ...]]]:
    """`count` cursors of this connection: made once, as a cursor costs more to make than to reuse."""
    kept: list[psycopg.RawCursor[tuple[Any, ...]]] = conn.connection.info.setdefault(_CURSORS, [])
    while len(kept) < count:
        kept.append(psycopg.RawCursor(driver, row_factory=tuple_row))
    return kept[:count]


def fetch_all(
    conn: Connection, statements: Sequence[Statement], *, ending: bool = False
) -> list[list[dict[str, Any]]]:
    """Every statement's rows, as dicts, sent and answered in one round trip.

    The BEGIN and transaction settings a unit of work left pending go first, in the same round trip. A
    driver error is raised as SQLAlchemy's (`_errors_as_sqlalchemy`).

    `ending`: these are the use case's last reads. In a unit of work that allows it (`defer_begin`) the
    COMMIT goes in the same round trip, not in one of its own after them; the unit of work's commit then
    finds nothing left to do. A statement sent after them after all (a rare path: the reason a user has
    no profile) opens the same transaction again, with the same settings, in a new snapshot.
    """
    info = conn.info  # SQLAlchemy finds it through three objects on every look-up
    refuse_while_streaming(conn)
    opens = PENDING_BEGIN in info
    opening = _opening(info)
    if ending and REOPEN in info:
        rows = _pipelined(conn, [*opening, *statements, _COMMIT], opens=opens)[len(opening) : -1]
        begin, settings = info[REOPEN]
        info[PENDING_BEGIN] = begin
        if settings:
            info[PENDING] = dict(settings)
        return rows
    return _pipelined(conn, [*opening, *statements], opens=opens)[len(opening) :]


def _pipelined(
    conn: Connection, statements: Sequence[Statement], *, opens: bool = False
) -> list[list[dict[str, Any]]]:
    """The statements' rows. Statements that open their own transaction (`opens`: the first is the BEGIN
    a unit of work deferred, on a connection in autocommit mode and idle) go through libpq directly
    (core.store.libpq_pipeline), which prepares them; every other statement, and every statement where
    nothing may be prepared (a transaction pooler: `prepare_threshold` None), through psycopg's cursors,
    which also begin the transaction of a connection that is not in autocommit mode themselves."""
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    compiled = [_compiled(statement.sql, conn.dialect) for statement in statements]
    params = [_values(c, s.params) for c, s in zip(compiled, statements, strict=True)]
    with _errors_as_sqlalchemy(conn, driver):
        if opens and _may_queue(driver):
            queries = [(c.query, values) for c, values in zip(compiled, params, strict=True)]
            answers = run_transaction(conn.connection.info, driver, queries)
            return [
                [] if answer is None else _as_dicts(c, answer.rows, answer.result, driver)
                for c, answer in zip(compiled, answers, strict=True)
            ]
        cursors = _cursors(conn, driver, len(compiled))
        with driver.pipeline():
            for cursor, c, values in zip(cursors, compiled, params, strict=True):
                cursor.execute(c.query, values)
        return [_dicts(c, cursor) for c, cursor in zip(compiled, cursors, strict=True)]


def _may_queue(driver: psycopg.Connection[Any]) -> bool:
    """Whether a transaction's statements may be queued with libpq: prepared statements are on, and the
    connection is in autocommit mode and idle (the statements' own BEGIN opens their transaction)."""
    return (
        driver.prepare_threshold is not None
        and driver.autocommit
        and driver.pgconn.transaction_status == TransactionStatus.IDLE
    )


def stream_rows(conn: Connection, statement: Statement, *, batch: int) -> Iterator[dict[str, Any]]:
    """A statement's rows, as dicts, `batch` at a time, in the use case's transaction.

    SQLAlchemy streams through a server-side cursor (DECLARE), and PostgreSQL never runs a cursor's query
    in parallel; a portal run to its end, its rows sent in chunks, can be. Memory stays one batch (one row
    with a libpq older than 17, which cannot send chunks).

    psycopg holds the connection's lock from the first row to the last: a statement sent on it meanwhile,
    from the same thread, would wait for that lock forever. So a statement sent while a stream is read
    raises instead (`refuse_while_streaming`), and the unit of work closes a stream left unread before it
    ends its transaction (`close_streams`), as when the code reading the rows raised.
    """
    rows = _streamed(conn, statement, batch)
    conn.info.setdefault(_STREAMS, []).append(rows)
    return rows


def _streamed(conn: Connection, statement: Statement, batch: int) -> Iterator[dict[str, Any]]:
    opening = _opening(conn.info)
    if opening:
        _pipelined(conn, opening)
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    compiled = _compiled(statement.sql, conn.dialect)
    with _errors_as_sqlalchemy(conn, driver), psycopg.RawCursor(driver, row_factory=dict_row) as cursor:
        size = batch if psycopg.capabilities.has_stream_chunked() else 1
        yield from cursor.stream(compiled.query, _values(compiled, statement.params), size=size)


def refuse_while_streaming(conn: Connection) -> None:
    """Raise, rather than wait forever, when a statement is sent on a connection a stream is being read on."""
    if any(inspect.getgeneratorstate(rows) == inspect.GEN_SUSPENDED for rows in conn.info.get(_STREAMS, ())):
        raise RuntimeError("the connection is still streaming rows (stream_rows): read them all first")


def close_streams(conn: Connection) -> None:
    """Close the connection's streams: one left unread is cancelled, and its lock let go."""
    for rows in conn.info.pop(_STREAMS, ()):
        rows.close()


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
