"""A transaction's statements queued with libpq, sent in one flush and read back in one go.

psycopg's pipeline mode sends each statement through a cursor that polls the socket after it, and each
poll lets go of the interpreter's lock: under a burst of checks, every one of those polls could be a
thread switch, and their work was most of the pipeline's CPU in this process. Here the statements of a
unit of work that opens its own transaction (a check: BEGIN, the settings, the reads, COMMIT) are
queued with libpq, flushed once and read once; their rows are loaded by psycopg's own loaders, so every
value is the one a cursor gives (numeric as Decimal).

Each statement is prepared once per connection, under a name of ours, and its generic plan then serves
every check. psycopg deallocates every prepared statement on a connection when a transaction it ran
rolls back (DEALLOCATE ALL), ours included: a pipeline that finds one of its statements gone rolls
back the transaction it opened and runs once more, preparing them anew. Where nothing may be prepared
(a transaction pooler), the caller keeps psycopg's cursors (core.store.pipeline).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import abc, errors, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import execute, fetch_many, send
from psycopg.waiting import wait

# Where a connection keeps what it prepared (in the pool's record of it, gone with the connection):
# statement text and parameter types -> name; the numbers its names are made of; and the loaders and
# dumpers, made once.
_PREPARED = "tokens_libpq_prepared"
_NUMBERS = "tokens_libpq_numbers"
_TRANSFORMER = "tokens_libpq_transformer"
# How long a wait for the socket lasts before the wait loop looks again (psycopg's own interval).
_WAIT_INTERVAL = 0.1
_STATEMENT_GONE = "26000"  # invalid_sql_statement_name: a prepared statement that no longer exists


class _StatementGone(Exception):
    """A statement prepared earlier on this connection was deallocated since (`error` says which)."""

    def __init__(self, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error


class Answer(NamedTuple):
    """A statement's rows, and the result they came in (its column names, read where needed)."""

    rows: list[tuple[Any, ...]]
    result: pq.abc.PGresult


def run_transaction(
    info: dict[Any, Any], driver: psycopg.Connection[Any], statements: Sequence[tuple[bytes, list[Any]]]
) -> list[Answer | None]:
    """Each statement's rows (None for one that returns none, such as BEGIN), in order.

    `statements` ($n text, parameter values) open their own transaction on an idle connection in
    autocommit mode (the first is a BEGIN) and may end it. `info` is the pool's record of the connection.
    A failed statement is raised as psycopg raises it, the transaction it opened left aborted for the
    unit of work to roll back.
    """
    try:
        return _run(info, driver, statements)
    except _StatementGone:
        with driver.lock:
            if driver.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                driver.pgconn.send_query(b"ROLLBACK")
                wait(execute(driver.pgconn), driver.pgconn.socket, interval=_WAIT_INTERVAL)
        info[_PREPARED] = {}
    try:
        return _run(info, driver, statements)
    except _StatementGone as gone:  # prepared in this very pipeline, and gone: not ours to mend
        raise gone.error from None


def _run(
    info: dict[Any, Any], driver: psycopg.Connection[Any], statements: Sequence[tuple[bytes, list[Any]]]
) -> list[Answer | None]:
    pgconn = driver.pgconn
    transformer: abc.Transformer = info.get(_TRANSFORMER) or info.setdefault(
        _TRANSFORMER, Transformer(driver)
    )
    prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = info.setdefault(_PREPARED, {})
    numbers: itertools.count[int] = info.setdefault(_NUMBERS, itertools.count())
    # Which results answer a statement (its index) and which a preparation (None), in the order sent.
    answers: list[int | None] = []
    preparing: list[tuple[bytes, tuple[int, ...]]] = []
    with driver.lock:
        pgconn.enter_pipeline_mode()
        try:
            for index, (query, values) in enumerate(statements):
                params = transformer.dump_sequence(values, [PyFormat.AUTO] * len(values))
                types, formats = tuple(transformer.types or ()), list(transformer.formats or ())
                name = prepared.get((query, types))
                if name is None:
                    # Never a name used before on this connection, even after a reset: one left on the
                    # server would refuse to be prepared again.
                    name = prepared[(query, types)] = f"tokens_{next(numbers)}".encode()
                    preparing.append((query, types))
                    pgconn.send_prepare(name, query, param_types=types)
                    answers.append(None)
                pgconn.send_query_prepared(name, params, param_formats=formats)
                answers.append(index)
            pgconn.pipeline_sync()
            wait(send(pgconn), pgconn.socket, interval=_WAIT_INTERVAL)
            results = _until_sync(pgconn)
        except BaseException:
            # A pipeline left unsent or half read (a lost connection, an interrupt) cannot carry another
            # statement: the connection is closed, so the pool discards it rather than hand it out.
            driver.close()
            raise
        pgconn.exit_pipeline_mode()
    try:
        return _answers(driver, transformer, answers, results)
    except Exception:
        for key in preparing:  # a preparation that failed, or was skipped after a failure, is redone
            prepared.pop(key, None)
        raise


def _until_sync(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Every result up to the pipeline's sync (each statement's, or its abort), in order."""
    results: list[pq.abc.PGresult] = []
    while True:
        fetched = wait(fetch_many(pgconn), pgconn.socket, interval=_WAIT_INTERVAL)
        for result in fetched:
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                return results
            results.append(result)


def _answers(
    driver: psycopg.Connection[Any],
    transformer: abc.Transformer,
    answers: list[int | None],
    results: list[pq.abc.PGresult],
) -> list[Answer | None]:
    """The statements' rows; the first error among the results raised, a deallocated statement as such."""
    rows: list[Answer | None] = []
    for answer, result in zip(answers, results, strict=True):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            error = errors.error_from_result(result, encoding=driver.info.encoding)
            if error.sqlstate == _STATEMENT_GONE:
                raise _StatementGone(error)
            raise error
        if result.status == pq.ExecStatus.PIPELINE_ABORTED:
            raise errors.PipelineAborted("pipeline aborted")
        if answer is None:
            continue
        if result.status == pq.ExecStatus.TUPLES_OK:
            transformer.set_pgresult(result)
            rows.append(Answer(transformer.load_rows(0, result.ntuples, tuple), result))
        else:
            rows.append(None)
    return rows
