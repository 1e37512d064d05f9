"""Whether a pooled connection needs a ping before a use case gets it.

SQLAlchemy's pre-ping sends `SELECT 1` at every checkout: a round trip of its own ahead of every use
case, one of a check's four. A connection the server closed (a restart, a terminated backend, a pooler
dropping its client) has said so on its socket: the server's goodbye and the end of the stream make it
readable, which one poll(2) sees without a round trip. So a connection is pinged only when its socket
has something to say, or when it sat in the pool longer than QUIET_SECONDS (a peer that vanished without
a word is noticed by TCP keepalives only after a minute); one checked in moments ago with a silent
socket is handed out as it is. A ping that fails invalidates the pool, as SQLAlchemy's own pre-ping does,
and a new connection is made; a connection just made is not pinged.
"""

from __future__ import annotations

import select
import time
from functools import partial
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

# Longer in the pool than this, and a connection is pinged whatever its socket says.
QUIET_SECONDS = 10.0
# When the connection was last checked in (the pool's record of a connection is cleared with it).
CHECKED_IN = "tokens_checked_in"


def ping_when_needed(engine: Engine) -> None:
    """Ping the engine's connections at checkout only when they may be gone (instead of `pool_pre_ping`)."""
    event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "checkout", partial(_checkout, engine.dialect))


def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    if dbapi_connection is not None:
        record.info[CHECKED_IN] = time.monotonic()


def _checkout(
    dialect: Dialect, dbapi_connection: Any, record: ConnectionPoolEntry, _: PoolProxiedConnection
) -> None:
    checked_in = record.info.get(CHECKED_IN)
    if checked_in is None:
        return
    if time.monotonic() - checked_in < QUIET_SECONDS and not _has_input(dbapi_connection):
        return
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as error:
        if dialect.is_disconnect(error, dbapi_connection, None):
            raise InvalidatePoolError() from error
        raise


def _has_input(dbapi_connection: Any) -> bool:
    """Whether the server sent anything to an idle connection: between transactions it only ever does so
    to say goodbye (a closed or broken socket polls readable too)."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
