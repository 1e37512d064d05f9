"""Approval requests and their audit trail in the bot's own schema: insert, read, lock, close."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from core.domain.approvals import ApprovalRequest, Correction, Decision, Person, RequestKind, RequestStatus
from core.domain.errors import RequestNotFoundError
from core.domain.models import UserRef
from core.settings import Settings


def decide(
    conn: Connection,
    settings: Settings,
    request: ApprovalRequest,
    outcome: RequestStatus,
    actor: Person,
    now: datetime,
    reason: str | None = None,
    *,
    details: dict[str, Any] | None = None,
    applied: tuple[int, int, str | None] | None = None,
) -> Decision:
    """Record a decision on the request row and in the audit log (the caller's transaction commits both),
    and say what it was."""
    before, after, row_id = applied or (None, None, None)
    # An expiry is the clock's doing: the request records no decider, the audit log who noticed it.
    decider = None if outcome is RequestStatus.EXPIRED else actor
    conn.execute(
        text(
            f"UPDATE {_table(settings)} SET status = :s, decided_by = :by, decided_by_name = :name,"
            " decided_at = :at, decision_reason = :why, balance_before = :before, balance_after = :after,"
            " ledger_row_id = :row WHERE id = :id"
        ),
        {
            "s": outcome.value,
            "by": decider.slack_id if decider else None,
            "name": decider.name if decider else None,
            "at": now,
            "why": reason,
            "before": before,
            "after": after,
            "row": row_id,
            "id": request.id,
        },
    )
    event = (
        "corrected" if outcome is RequestStatus.APPLIED and request.correction is not None else outcome.value
    )
    audit(
        conn,
        settings,
        request.id,
        event,
        actor,
        now,
        {**(details or {}), **({"reason": reason} if reason else {})},
    )
    return Decision(
        outcome=outcome, request=read_request(conn, settings, request.id, for_update=False), actor=actor
    )


def insert_request(
    conn: Connection,
    settings: Settings,
    actor: Person,
    user: UserRef,
    kind: RequestKind,
    reason: str,
    remaining: int,
    now: datetime,
    *,
    delta: int | None = None,
    correction: Correction | None = None,
) -> ApprovalRequest:
    request_id = conn.execute(
        text(
            f"INSERT INTO {_table(settings)} (kind, user_id, user_email, delta, reason, remaining_at_request,"
            " correction, requested_by, requested_by_name, requested_at, expires_at)"
            " VALUES (:kind, :u, :email, :delta, :reason, :remaining, CAST(:corr AS jsonb), :by, :name, :at,"
            " :expires) RETURNING id"
        ),
        {
            "kind": kind.value,
            "u": user.user_id,
            "email": user.email,
            "delta": delta,
            "reason": reason,
            "remaining": remaining,
            "corr": correction.model_dump_json() if correction else None,
            "by": actor.slack_id,
            "name": actor.name,
            "at": now,
            "expires": now + timedelta(hours=settings.tokens_request_ttl_hours),
        },
    ).scalar_one()
    details: dict[str, Any] = {"reason": reason, "remaining": remaining}
    if delta is not None:
        details["delta"] = delta
    if correction is not None:
        details["correction"] = correction.model_dump(mode="json")
    audit(conn, settings, int(request_id), "requested", actor, now, details)
    return read_request(conn, settings, int(request_id), for_update=False)


def audit(
    conn: Connection,
    settings: Settings,
    request_id: int,
    event: str,
    actor: Person,
    now: datetime,
    details: dict[str, Any],
) -> None:
    conn.execute(
        text(
            f'INSERT INTO "{settings.tokens_schema}".audit_log (request_id, event, actor, actor_name, at, details)'
            " VALUES (:r, :e, :a, :n, :at, CAST(:d AS jsonb))"
        ),
        {
            "r": request_id,
            "e": event,
            "a": actor.slack_id,
            "n": actor.name,
            "at": now,
            "d": json.dumps(details),
        },
    )


def read_request(
    conn: Connection, settings: Settings, request_id: int, *, for_update: bool
) -> ApprovalRequest:
    """The request row; `for_update` locks it until commit: the line every concurrent click for it queues in."""
    lock = " FOR UPDATE" if for_update else ""
    row = (
        conn.execute(text(f"SELECT * FROM {_table(settings)} WHERE id = :id{lock}"), {"id": request_id})
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise RequestNotFoundError(
            f"There is no request #{request_id}. `/tokens requests` lists the open ones."
        )
    return _from_row(row)


def overdue_requests(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    """Pending requests past their expiry, locked; rows another replica is deciding right now are skipped."""
    rows = conn.execute(
        text(
            f"SELECT * FROM {_table(settings)} WHERE status = 'pending' AND expires_at <= :now"
            " ORDER BY id FOR UPDATE SKIP LOCKED"
        ),
        {"now": now},
    ).mappings()
    return [_from_row(row) for row in rows]


def pending_requests(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    rows = conn.execute(
        text(f"SELECT * FROM {_table(settings)} WHERE status = 'pending' AND expires_at > :now ORDER BY id"),
        {"now": now},
    ).mappings()
    return [_from_row(row) for row in rows]


def attach_message(conn: Connection, settings: Settings, request_id: int, channel: str, ts: str) -> None:
    """Remember where the approval message is, so every later decision can update it in place."""
    conn.execute(
        text(f"UPDATE {_table(settings)} SET channel = :c, message_ts = :ts WHERE id = :id"),
        {"c": channel, "ts": ts, "id": request_id},
    )


def _table(settings: Settings) -> str:
    return f'"{settings.tokens_schema}".approval_requests'


def _from_row(row: RowMapping) -> ApprovalRequest:
    decider = (
        Person(slack_id=row["decided_by"], name=row["decided_by_name"])
        if row["decided_by"] is not None
        else None
    )
    return ApprovalRequest(
        id=row["id"],
        kind=RequestKind(row["kind"]),
        status=RequestStatus(row["status"]),
        user=UserRef(user_id=str(row["user_id"]), email=row["user_email"]),
        delta=row["delta"],
        reason=row["reason"],
        remaining_at_request=int(row["remaining_at_request"]),
        correction=Correction.model_validate(row["correction"]) if row["correction"] is not None else None,
        requester=Person(slack_id=row["requested_by"], name=row["requested_by_name"]),
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        decider=decider,
        decided_at=row["decided_at"],
        decision_reason=row["decision_reason"],
        balance_before=None if row["balance_before"] is None else int(row["balance_before"]),
        balance_after=None if row["balance_after"] is None else int(row["balance_after"]),
        ledger_row_id=row["ledger_row_id"],
        channel=row["channel"],
        message_ts=row["message_ts"],
    )
