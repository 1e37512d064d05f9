"""The scheduler's share of the approval requests: one tick at a time, and the reminders it sends."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, text, update

from core.domain.approvals import ApprovalRequest, RequestStatus
from core.settings import Settings
from core.store.requests import request_from_row, select_requests
from core.store.tables import approval_requests, in_bot_schema

# Any fixed number works (core.store.migrate and core.store.digests use their neighbours); the schema's
# hash is the second key, so two bots sharing one database in different schemas do not skip each other.
_TICK_LOCK = 7_412_004


def try_lock_tick(conn: Connection, settings: Settings) -> bool:
    """Until commit, the only tick at work on this schema; False at once when another one is.

    A tick that finds the lock taken skips rather than waits: the other one is doing the same work, and
    cron starts another tick in a minute anyway.
    """
    taken = conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:k, hashtext(:s))"),
        {"k": _TICK_LOCK, "s": settings.tokens_schema},
    ).scalar_one()
    return bool(taken)


def due_reminders(
    conn: Connection, settings: Settings, now: datetime, interval: timedelta
) -> list[ApprovalRequest]:
    """Pending, unexpired requests with an approval message that have waited `interval` and were not
    reminded within it, locked (rows another transaction is deciding are skipped: they are being seen to)."""
    r = approval_requests.c
    cutoff = now - interval
    query = (
        select_requests()
        .where(
            r.status == RequestStatus.PENDING.value,
            r.expires_at > now,
            r.requested_at <= cutoff,
            or_(r.reminded_at.is_(None), r.reminded_at <= cutoff),
            r.channel.is_not(None),
            r.message_ts.is_not(None),
        )
        .order_by(r.id)
        .with_for_update(skip_locked=True)
    )
    return [
        request_from_row(row)
        for row in conn.execute(query, execution_options=in_bot_schema(settings)).mappings()
    ]


def mark_reminded(conn: Connection, settings: Settings, request_ids: list[int], now: datetime) -> None:
    """Record the reminder on the rows `due_reminders` locked; the caller's transaction commits it."""
    if request_ids:
        conn.execute(
            update(approval_requests).where(approval_requests.c.id.in_(request_ids)).values(reminded_at=now),
            execution_options=in_bot_schema(settings),
        )
