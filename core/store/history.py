"""Reading the bot's audit trail: one user's events, newest first, and the whole log for auditors, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, Text, cast, distinct, func, select

from core.domain.approvals import Correction, Person, RequestKind
from core.domain.history import AuditRecord, HistoryEntry, HistoryEvent
from core.settings import Settings
from core.store.tables import approval_requests, audit_log, in_bot_schema

# Rows fetched per round trip of the export's server-side cursor: memory stays flat however long the log.
EXPORT_BATCH = 1000

_events = audit_log.join(approval_requests, approval_requests.c.id == audit_log.c.request_id)


def count_history(conn: Connection, settings: Settings, user_id: str) -> tuple[int, int]:
    """How many events, and how many requests, the audit trail holds for the user."""
    query = (
        select(func.count(), func.count(distinct(audit_log.c.request_id)))
        .select_from(_events)
        .where(approval_requests.c.user_id == user_id)
    )
    events, requests = conn.execute(query, execution_options=in_bot_schema(settings)).one()
    return int(events), int(requests)


def history_page(
    conn: Connection, settings: Settings, user_id: str, *, offset: int, limit: int
) -> list[HistoryEntry]:
    """One page of the user's events, newest first; ties in time keep the order they were written in."""
    a, r = audit_log.c, approval_requests.c
    query = (
        select(
            a.id,
            a.event,
            a.actor,
            a.actor_name,
            a.at,
            a.details,
            r.id.label("request_id"),
            r.kind,
            r.delta,
            r.correction,
            r.remaining_at_request,
            r.balance_before,
            r.balance_after,
            r.ledger_row_id,
        )
        .select_from(_events)
        .where(r.user_id == user_id)
        .order_by(a.at.desc(), a.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [_entry(row) for row in conn.execute(query, execution_options=in_bot_schema(settings)).mappings()]


def _entry(row: RowMapping) -> HistoryEntry:
    """The event with what it did to the balance: the request row holds the outcome of its one decision."""
    event = HistoryEvent(row["event"])
    correction = None if row["correction"] is None else Correction.model_validate(row["correction"])
    before = after = None
    if event is HistoryEvent.REQUESTED:
        before = int(row["remaining_at_request"])
        after = correction.remaining if correction is not None else before + int(row["delta"] or 0)
    elif event in (HistoryEvent.APPLIED, HistoryEvent.CORRECTED) and row["balance_after"] is not None:
        before, after = int(row["balance_before"]), int(row["balance_after"])
    details = row["details"] if isinstance(row["details"], dict) else {}
    reason = details.get("reason")
    return HistoryEntry(
        audit_id=row["id"],
        at=row["at"],
        event=event,
        actor=Person(slack_id=row["actor"], name=row["actor_name"]),
        request_id=row["request_id"],
        kind=RequestKind(row["kind"]),
        delta=row["delta"],
        correction=correction,
        balance_before=before,
        balance_after=after,
        ledger_row_id=row["ledger_row_id"] if event is HistoryEvent.APPLIED else None,
        reason=reason if isinstance(reason, str) else None,
    )


def _export_query(since: datetime | None) -> Select[Any]:
    a, r = audit_log.c, approval_requests.c
    query = (
        select(
            r.id.label("request_id"),
            r.kind,
            r.user_id,
            r.user_email,
            a.event,
            a.actor,
            a.actor_name,
            a.at,
            cast(a.details, Text).label("details"),
        )
        .select_from(_events)
        .order_by(a.at, a.id)
    )
    return query if since is None else query.where(a.at >= since)


def stream_audit(conn: Connection, settings: Settings, since: datetime | None) -> Iterator[AuditRecord]:
    """Every audit-log row from `since` on, oldest first, through a server-side cursor (psycopg's named
    cursor): EXPORT_BATCH rows in memory at a time, in the caller's one snapshot."""
    options = {**in_bot_schema(settings), "stream_results": True, "yield_per": EXPORT_BATCH}
    for row in conn.execute(_export_query(since), execution_options=options):
        yield AuditRecord(
            request_id=row.request_id,
            kind=row.kind,
            user_id=row.user_id,
            user_email=row.user_email,
            event=row.event,
            actor=row.actor,
            actor_name=row.actor_name,
            at=row.at,
            details=row.details,
        )
