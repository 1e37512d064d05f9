"""Engines and the unit of work: the one place a use case's transaction is opened."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from core.settings import to_sqlalchemy_url
from core.store.liveness import ping_when_needed
from core.store.pipeline import (
    PENDING,
    PENDING_BEGIN,
    REOPEN,
    close_streams,
    defer,
    defer_begin,
    fetch_all,
    refuse_while_streaming,
    settings_statement,
)

Isolation = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


# Supabase's transaction pooler (Supavisor/pgbouncer) listens here.
TRANSACTION_POOLER_PORT = 6543
# Under Slack's 3 s so a command during an outage is told so in time; libpq's minimum is 2.
CONNECT_TIMEOUT_SECONDS = 2
# The execution option carrying an engine's statement timeout into every unit of work.
_STATEMENT_TIMEOUT = "tokens_statement_timeout_ms"


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    application_name: str = "tokens-bot",
    statement_timeout_ms: int | None = None,
) -> Engine:
    """Build a pooled psycopg engine whose connections are pinged at checkout when they may be gone
    (core.store.liveness), so a restarted database is survived without a restart.

    Connecting gives up after CONNECT_TIMEOUT_SECONDS and TCP keepalives notice a vanished server, so
    an outage is an error within seconds, never a hang. `statement_timeout_ms` is applied to every
    transaction `unit_of_work` opens on this engine.
    """
    sa_url = make_url(to_sqlalchemy_url(url))
    connect_args: dict[str, object] = {
        "application_name": application_name,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if sa_url.port == TRANSACTION_POOLER_PORT or sa_url.query.get("prepare_threshold") == "none":
        # A transaction pooler (Supabase on 6543, pgbouncer) cannot keep prepared statements.
        connect_args["prepare_threshold"] = None
        sa_url = sa_url.difference_update_query(["prepare_threshold"])
    engine = create_engine(
        sa_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
        execution_options={_STATEMENT_TIMEOUT: statement_timeout_ms} if statement_timeout_ms else {},
    )
    event.listen(engine, "before_cursor_execute", _settings_first)
    ping_when_needed(engine)
    return engine


def _settings_first(conn: Connection, *_: object) -> None:
    """A statement sent through SQLAlchemy sends the BEGIN and transaction settings left pending before it
    (and none is sent while the connection streams rows: core.store.pipeline.stream_rows)."""
    refuse_while_streaming(conn)
    if PENDING_BEGIN in conn.info or PENDING in conn.info:
        fetch_all(conn, [])


@contextmanager
def unit_of_work(
    engine: Engine,
    *,
    read_only: bool = False,
    isolation: Isolation = "READ COMMITTED",
    local: Mapping[str, str] | None = None,
    defer_settings: bool = False,
) -> Iterator[Connection]:
    """Open one transaction for one use case; it commits only when the use case says so (`conn.commit()`),
    and rolls back otherwise, an error or a refusal included. A read-only one that ends without an error
    commits: the same for the data, cheaper for the next use case on the connection.

    Read-only use cases run REPEATABLE READ so every query of one reply sees the same snapshot; the
    driver opens them with a single `BEGIN ... READ ONLY`. The engine's statement timeout and the
    `local` settings hold for this transaction only (SET LOCAL semantics), so they also work through a
    transaction pooler (Supabase's port 6543); they are set together, in one round trip.

    With `defer_settings` that round trip is saved, and the driver's BEGIN too: the transaction is opened
    by an explicit `BEGIN` sent with the settings ahead of the use case's first statement, in its round
    trip (a pipelined read, or any statement sent through SQLAlchemy); the driver, in autocommit mode,
    opens nothing itself, and the commit or rollback ends the transaction as ever (SQLAlchemy turns
    autocommit off again when the connection goes back to the pool). Only for use cases that commit
    once, at the end, and send nothing through the driver directly (a check): such a statement would
    run outside the transaction.
    """
    with engine.connect() as conn:
        if defer_settings:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            defer_begin(
                conn,
                f"BEGIN ISOLATION LEVEL {isolation} {'READ ONLY' if read_only else 'READ WRITE'}",
                reads_may_end=read_only,
            )
        else:
            conn = conn.execution_options(isolation_level=isolation, postgresql_readonly=read_only)
        transaction = conn.begin()
        try:
            settings = dict(local or {})
            timeout = conn.get_execution_options().get(_STATEMENT_TIMEOUT)
            if timeout:
                settings["statement_timeout"] = str(int(timeout))
            if settings:
                if defer_settings:
                    defer(conn, settings)
                else:
                    fetch_all(conn, [settings_statement(settings)])
            yield conn
            close_streams(conn)
            if read_only and transaction.is_active:
                # Nothing to undo, and a commit keeps the statements psycopg prepared on this connection,
                # which a rollback discards (DEALLOCATE ALL): every check would be planned afresh.
                transaction.commit()
        finally:
            if not conn.invalidated:  # an invalidated connection's info goes with it (and would reconnect)
                close_streams(conn)
                info = conn.info
                for left in (PENDING_BEGIN, PENDING, REOPEN):
                    info.pop(left, None)
            if transaction.is_active:
                transaction.rollback()
