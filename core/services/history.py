"""`/tokens history` and `tokens-bot audit-export`: reading back what the bot recorded, in one snapshot each."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from uuid import UUID

from sqlalchemy import Connection

from core.domain.errors import UserNotFoundError
from core.domain.history import AuditRecord, HistoryReport
from core.domain.models import Page, UserRef
from core.settings import Settings
from core.store.columns import Columns
from core.store.history import count_history, history_page, stream_audit
from core.store.product import ProductShape
from core.store.users import find_user


def user_history(
    conn: Connection, shape: ProductShape, settings: Settings, user: UUID | str, *, page: int = 1
) -> HistoryReport:
    """One page of the user's audit trail, newest first; count and page come from the same snapshot."""
    ref = _history_user(conn, shape, settings, user)
    total, requests = count_history(conn, settings, ref.user_id)
    size = settings.tokens_page_size
    pages = max(1, math.ceil(total / size))
    number = min(max(page, 1), pages)
    offset = (number - 1) * size
    return HistoryReport(
        user=ref,
        entries=history_page(conn, settings, ref.user_id, offset=offset, limit=size) if total else [],
        total=total,
        requests=requests,
        offset=offset,
        page=Page(number=number, count=pages),
    )


def _history_user(conn: Connection, shape: ProductShape, settings: Settings, user: UUID | str) -> UserRef:
    """The user as `check` finds them; a user id whose profile is gone keeps its history readable, since an
    audit trail outlives the account it is about."""
    try:
        return find_user(conn, Columns.of(shape, settings), user)
    except UserNotFoundError:
        named_by_email = isinstance(user, str) and "@" in user
        if named_by_email or count_history(conn, settings, str(user))[0] == 0:
            raise
        return UserRef(user_id=str(user))


def export_audit(
    conn: Connection, settings: Settings, write: Callable[[AuditRecord], None], since: date | None
) -> int:
    """Hand every audit-log row from `since` (a UTC day) on to `write`, oldest first; returns how many."""
    start = None if since is None else datetime(since.year, since.month, since.day, tzinfo=UTC)
    written = 0
    for record in stream_audit(conn, settings, start):
        write(record)
        written += 1
    return written
