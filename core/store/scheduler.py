"""The lease that elects one `tokens-bot serve` process, of all workers and replicas, to run the tick loop."""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.settings import Settings

# Beside the tick's own lock (core.store.requests uses 7_412_004): the loop's leader holds this one for as
# long as its connection lives, and every tick it runs still takes the tick's lock, so a cron tick and the
# loop never work at once either.
_LEADER_LOCK = 7_412_005


def try_lead(conn: Connection, settings: Settings) -> bool:
    """A session-level lock: held until this connection closes (its process gone), never by two at once."""
    taken = conn.execute(
        text("SELECT pg_try_advisory_lock(:k, hashtext(:s))"),
        {"k": _LEADER_LOCK, "s": settings.tokens_schema},
    ).scalar_one()
    return bool(taken)


def still_leading(conn: Connection, settings: Settings) -> bool:
    """Whether this connection still holds the lease (a restarted server would have dropped it)."""
    held = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            " AND classid = :k AND objid = hashtext(:s)::oid AND granted)"
        ),
        {"k": _LEADER_LOCK, "s": settings.tokens_schema},
    ).scalar_one()
    return bool(held)
