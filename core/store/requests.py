"""Approval requests and their audit trail in the bot's own schema: insert, read, lock, close."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by

from core.domain.approvals import ApprovalRequest, Correction, Decision, Person, RequestKind, RequestStatus
from core.domain.errors import RequestNotFoundError
from core.domain.fix_batches import FixSummary
from core.domain.models import UserRef
from core.settings import Settings
from core.store.tables import approval_requests, approval_votes, audit_log, in_bot_schema


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
        update(approval_requests)
        .where(approval_requests.c.id == request.id)
        .values(
            status=outcome.value,
            decided_by=decider.slack_id if decider else None,
            decided_by_name=decider.name if decider else None,
            decided_at=now,
            decision_reason=reason,
            balance_before=before,
            balance_after=after,
            ledger_row_id=row_id,
        ),
        execution_options=in_bot_schema(settings),
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
    fix: FixSummary | None = None,
    quorum: int = 1,
) -> ApprovalRequest:
    request_id = conn.execute(
        insert(approval_requests)
        .values(
            kind=kind.value,
            user_id=user.user_id,
            user_email=user.email,
            delta=delta,
            reason=reason,
            remaining_at_request=remaining,
            correction=correction.model_dump(mode="json") if correction else None,
            fix=fix.model_dump(mode="json") if fix else None,
            quorum=quorum,
            requested_by=actor.slack_id,
            requested_by_name=actor.name,
            requested_at=now,
            expires_at=now + timedelta(hours=settings.tokens_request_ttl_hours),
        )
        .returning(approval_requests.c.id),
        execution_options=in_bot_schema(settings),
    ).scalar_one()
    details: dict[str, Any] = {"reason": reason, "remaining": remaining, "quorum": quorum}
    if delta is not None:
        details["delta"] = delta
    if correction is not None:
        details["correction"] = correction.model_dump(mode="json")
    if fix is not None:
        details["fix"] = fix.model_dump(mode="json", exclude={"largest"})
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
        insert(audit_log).values(
            request_id=request_id,
            event=event,
            actor=actor.slack_id,
            actor_name=actor.name,
            at=now,
            details=details,
        ),
        execution_options=in_bot_schema(settings),
    )


def read_request(
    conn: Connection, settings: Settings, request_id: int, *, for_update: bool
) -> ApprovalRequest:
    """The request row; `for_update` locks it until commit: the line every concurrent click for it queues in."""
    query = select_requests().where(approval_requests.c.id == request_id)
    row = (
        conn.execute(
            query.with_for_update() if for_update else query, execution_options=in_bot_schema(settings)
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise RequestNotFoundError(
            f"There is no request #{request_id}. `/tokens requests` lists the open ones."
        )
    return request_from_row(row)


def overdue_requests(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    """Pending requests past their expiry, locked; rows another replica is deciding right now are skipped."""
    query = (
        select_requests()
        .where(
            approval_requests.c.status == RequestStatus.PENDING.value, approval_requests.c.expires_at <= now
        )
        .order_by(approval_requests.c.id)
        .with_for_update(skip_locked=True)
    )
    return [
        request_from_row(row)
        for row in conn.execute(query, execution_options=in_bot_schema(settings)).mappings()
    ]


def pending_requests(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    query = (
        select_requests()
        .where(
            approval_requests.c.status == RequestStatus.PENDING.value, approval_requests.c.expires_at > now
        )
        .order_by(approval_requests.c.id)
    )
    return [
        request_from_row(row)
        for row in conn.execute(query, execution_options=in_bot_schema(settings)).mappings()
    ]


def latest_decisions(conn: Connection, settings: Settings, limit: int) -> list[ApprovalRequest]:
    """The requests decided most recently (applied, rejected, cancelled, expired, stale), newest first."""
    query = (
        select(approval_requests)
        .where(approval_requests.c.status != RequestStatus.PENDING.value)
        .order_by(approval_requests.c.decided_at.desc().nulls_last(), approval_requests.c.id.desc())
        .limit(limit)
    )
    return [
        request_from_row(row)
        for row in conn.execute(query, execution_options=in_bot_schema(settings)).mappings()
    ]


def attach_message(conn: Connection, settings: Settings, request_id: int, channel: str, ts: str) -> None:
    """Remember where the approval message is, so every later decision can update it in place."""
    conn.execute(
        update(approval_requests)
        .where(approval_requests.c.id == request_id)
        .values(channel=channel, message_ts=ts),
        execution_options=in_bot_schema(settings),
    )


def select_requests() -> Select[Any]:
    """Requests with their votes, oldest first, as one JSON column: one round trip per read."""
    v = approval_votes.c
    votes = (
        select(
            func.coalesce(
                func.jsonb_agg(
                    aggregate_order_by(
                        func.jsonb_build_object(
                            "voter",
                            func.jsonb_build_object("slack_id", v.voter, "name", v.voter_name),
                            "at",
                            v.at,
                        ),
                        v.at,
                    )
                ),
                text("'[]'::jsonb"),
            )
        )
        .where(v.request_id == approval_requests.c.id)
        .scalar_subquery()
        .label("votes")
    )
    return select(approval_requests, votes)


def record_vote(
    conn: Connection, settings: Settings, request: ApprovalRequest, actor: Person, now: datetime
) -> None:
    """One approver's vote; the caller holds the request's row lock, and audits a vote that decides nothing
    (the decision's own audit row names every approver)."""
    conn.execute(
        insert(approval_votes).values(
            request_id=request.id, voter=actor.slack_id, voter_name=actor.name, at=now
        ),
        execution_options=in_bot_schema(settings),
    )


def request_from_row(row: RowMapping) -> ApprovalRequest:
    """The row as the domain's request: people and the user are values of their own there."""
    decider = (
        Person(slack_id=row["decided_by"], name=row["decided_by_name"])
        if row["decided_by"] is not None
        else None
    )
    return ApprovalRequest.model_validate(
        {
            **row,
            "user": UserRef(user_id=str(row["user_id"]), email=row["user_email"]),
            "requester": Person(slack_id=row["requested_by"], name=row["requested_by_name"]),
            "decider": decider,
            "remaining_at_request": int(row["remaining_at_request"]),
            "balance_before": None if row["balance_before"] is None else int(row["balance_before"]),
            "balance_after": None if row["balance_after"] is None else int(row["balance_after"]),
        }
    )
