"""Two-person approval: asking for adjustments and corrections, and deciding each exactly once.

Every function here runs inside the caller's one transaction (see core.services.service); the decisions lock
the request row first, so any number of clicks on any number of replicas queue on that lock and all
but the first find the request already decided.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, text

from core.domain.balance import compute_balance
from core.domain.errors import (
    InvalidAdjustmentError,
    NotAllowedError,
    NotConfiguredError,
    ProductDataError,
    RequestNotFoundError,
    RequestRefusedError,
    StaleCorrectionError,
    UsageError,
)
from core.domain.models import Balance, CostUnit, Frozen, InitialGrant, UserRef
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.ledger_writes import insert_ledger_row, ledger_write_problems, require_fits
from core.store.product import ProductShape
from core.store.users import find_user


class RequestKind(StrEnum):
    ADJUSTMENT = "adjustment"
    CORRECTION = "correction"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STALE = "stale"


class Person(Frozen):
    """A Slack user as the audit trail names them; `email` is only known when Slack told us."""

    slack_id: str
    name: str
    email: str | None = None

    def audit(self) -> dict[str, str]:
        return {"slack_id": self.slack_id, "name": self.name}


# Expiries found by a sweep are nobody's decision; the audit trail names the bot itself.
SYSTEM = Person(slack_id="tokens-bot", name="tokens-bot")


class LedgerSnapshot(Frozen):
    """How far a user's ledger had got when a correction was computed: any new row makes it stale."""

    rows: int
    last_at: datetime | None


class Correction(Frozen):
    """The guide's Step 5 for one user: the profile's values before, and the ledger-derived values after."""

    initial_grant: InitialGrant
    explicit_initial_grant: int | None
    snapshot: LedgerSnapshot
    before_remaining: int
    before_used: int
    before_cost: Decimal
    remaining: int
    used: int
    cost: Decimal
    cost_unit: CostUnit = "dollars"


class ApprovalRequest(Frozen):
    """One grant, deduction or correction, from asking to its decision."""

    id: int
    kind: RequestKind
    status: RequestStatus
    user: UserRef
    delta: int | None
    reason: str
    remaining_at_request: int
    correction: Correction | None
    requester: Person
    requested_at: datetime
    expires_at: datetime
    decider: Person | None
    decided_at: datetime | None
    decision_reason: str | None
    balance_before: int | None
    balance_after: int | None
    ledger_row_id: str | None
    channel: str | None
    message_ts: str | None

    @property
    def resulting_balance(self) -> int:
        """The balance the request asks for, as computed when it was asked."""
        if self.correction is not None:
            return self.correction.remaining
        assert self.delta is not None
        return self.remaining_at_request + self.delta


class Outcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STALE = "stale"


class Decision(Frozen):
    """What one click changed: the outcome it caused and the request as it now stands."""

    outcome: Outcome
    request: ApprovalRequest
    actor: Person


class ReconcileReport(Frozen):
    """The guide's Step 4 for one user, and the ledger position a proposed correction must still match."""

    user: UserRef
    balance: Balance
    snapshot: LedgerSnapshot
    explicit_initial_grant: int | None

    @property
    def needs_correction(self) -> bool:
        b = self.balance
        return bool(b.remaining_discrepancy or b.used_discrepancy or b.cost_discrepancy)


def when(moment: datetime) -> str:
    """Times in replies and refusals: UTC to the minute, the same for every reader."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def request_adjustment(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    user: UUID | str,
    delta: int,
    reason: str,
    now: datetime,
) -> ApprovalRequest:
    """`/tokens adjust`: check the rules against the current balance and store a pending request."""
    _require_requester(settings, actor)
    reason = reason.strip()
    if not reason:
        raise UsageError("A reason is required: it goes into the ledger row and the audit trail.")
    cols = Columns.of(shape, settings)
    ref = find_user(conn, cols, user)
    _, remaining = _current_row(conn, cols, ref.user_id, lock=False)
    check_limits(settings, delta, remaining, cols)
    _require_ledger_writable(cols, settings, delta)
    return _insert_request(
        conn, settings, actor, ref, RequestKind.ADJUSTMENT, reason, int(remaining), now, delta=delta
    )


def reconcile(
    conn: Connection, shape: ProductShape, settings: Settings, user: UUID | str, initial_grant: int | None
) -> ReconcileReport:
    """`/tokens reconcile`: current against ledger-derived values, read in one snapshot."""
    cols = Columns.of(shape, settings)
    ref = find_user(conn, cols, user)
    return ReconcileReport(
        user=ref,
        balance=compute_balance(conn, shape, settings, ref.user_id, initial_grant),
        snapshot=_snapshot(conn, cols, ref.user_id),
        explicit_initial_grant=initial_grant,
    )


def propose_correction(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    user_id: str,
    initial_grant: int | None,
    seen: LedgerSnapshot,
    now: datetime,
) -> ApprovalRequest:
    """The "Propose correction" button: store the values the proposer saw, refusing if the ledger moved since."""
    _require_requester(settings, actor)
    report = reconcile(conn, shape, settings, user_id, initial_grant)
    if report.snapshot != seen:
        raise StaleCorrectionError(
            f"The ledger of {report.user.label} changed since that report ({report.snapshot.rows - seen.rows:+,}"
            " rows), so its values no longer hold. Run the reconciliation again and propose from the new one."
        )
    b = report.balance
    if not report.needs_correction:
        raise InvalidAdjustmentError(
            f"{report.user.label} already matches the ledger; there is nothing to correct."
        )
    if b.expected_remaining < 0:
        raise InvalidAdjustmentError(
            f"The ledger says {report.user.label} should have {b.expected_remaining:,} tokens; a correction"
            " may not set a balance below zero. Check the initial grant, or grant tokens with /tokens adjust."
        )
    check_correction_limits(settings, Columns.of(shape, settings), b)
    correction = Correction(
        initial_grant=b.initial_grant,
        explicit_initial_grant=initial_grant,
        snapshot=report.snapshot,
        before_remaining=b.current_remaining,
        before_used=b.current_used,
        before_cost=b.current_cost,
        remaining=b.expected_remaining,
        used=b.calculated_used,
        cost=b.calculated_cost,
        cost_unit=b.cost_unit,
    )
    reason = f"Set the balance to the ledger-derived values (initial grant: {b.initial_grant.description})"
    return _insert_request(
        conn,
        settings,
        actor,
        report.user,
        RequestKind.CORRECTION,
        reason,
        b.current_remaining,
        now,
        correction=correction,
    )


def check_correction_limits(settings: Settings, cols: Columns, b: Balance) -> None:
    """A correction moves remaining and used by at most TOKENS_MAX_ADJUSTMENT each, like an adjustment,
    and writes only values the profile's columns can hold."""
    for what, before, after in (
        ("remaining", b.current_remaining, b.expected_remaining),
        ("used", b.current_used, b.calculated_used),
    ):
        if abs(after - before) > settings.tokens_max_adjustment:
            raise InvalidAdjustmentError(
                f"This correction would move {what} by {after - before:+,} tokens, over the limit of"
                f" {settings.tokens_max_adjustment:,} per change (TOKENS_MAX_ADJUSTMENT). Check the initial"
                " grant; a change this large needs the limit raised by whoever runs tokens-bot."
            )
    require_fits(cols, REMAINING, b.expected_remaining, "The remaining balance")
    require_fits(cols, USED, b.calculated_used, "The used total")
    require_fits(cols, COST, b.calculated_cost, "The total cost")


def check_limits(settings: Settings, delta: int, remaining: int, cols: Columns) -> None:
    """The limits DESIGN.md names, checked when asked and again, on current values, when applied."""
    if delta == 0:
        raise InvalidAdjustmentError(
            "A delta of 0 changes nothing: give a positive amount to grant or a negative one to deduct."
        )
    if abs(delta) > settings.tokens_max_adjustment:
        raise InvalidAdjustmentError(
            f"{delta:+,} tokens is over the limit of {settings.tokens_max_adjustment:,} per adjustment"
            " (TOKENS_MAX_ADJUSTMENT)."
        )
    if delta < 0 and remaining + delta < 0:
        raise InvalidAdjustmentError(
            f"Deducting {-delta:,} tokens would take the balance from {remaining:,} to {remaining + delta:,};"
            f" a balance may not go below zero, so at most {max(remaining, 0):,} can be deducted now."
        )
    require_fits(cols, REMAINING, remaining + delta, "The balance")


def approve(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    request_id: int,
    clock: Callable[[], datetime],
) -> Decision:
    """Apply a request: ledger row, balance and the request's new state commit together or not at all.

    The clock is read once the request is locked: a click that waited behind another one's lock is
    judged (expiry, decided_at, approved_at) at the moment it actually decides.
    """
    if actor.slack_id not in settings.approvers:
        raise NotAllowedError(
            "Only tokens-bot approvers can approve requests. Ask an admin to add your Slack ID to"
            " TOKENS_APPROVERS."
        )
    request = _read_request(conn, settings, request_id, for_update=True)
    now = clock()
    _require_pending(request)
    if actor.slack_id == request.requester.slack_id:
        raise RequestRefusedError(
            f"You asked for request #{request.id} yourself; it needs a second person's approval."
        )
    if now >= request.expires_at:
        return _close(conn, settings, request, Outcome.EXPIRED, actor, now)
    target = find_user(conn, Columns.of(shape, settings), request.user.user_id)
    if actor.email is None:
        raise RequestRefusedError(
            "Slack did not tell tokens-bot your email address (Slack was unreachable, or the app lacks the"
            " users:read.email scope),"
            " so it cannot check that you are not approving a grant to yourself. Nothing was changed."
        )
    if target.email is not None and target.email.lower() == actor.email.lower():
        raise RequestRefusedError(
            f"Request #{request.id} changes the balance of {target.email}, which is your own email"
            " address: nobody approves their own grant. Another approver has to decide it."
        )
    if request.correction is not None:
        return _apply_correction(conn, shape, settings, request, request.correction, actor, now)
    return _apply_adjustment(conn, Columns.of(shape, settings), settings, request, actor, now)


def reject(
    conn: Connection,
    settings: Settings,
    actor: Person,
    request_id: int,
    reason: str | None,
    clock: Callable[[], datetime],
) -> Decision:
    """Close a request without applying it; the reason (or that none was given) is recorded."""
    if actor.slack_id not in settings.approvers:
        raise NotAllowedError("Only tokens-bot approvers can reject requests.")
    request = _read_request(conn, settings, request_id, for_update=True)
    now = clock()
    _require_pending(request)
    if actor.slack_id == request.requester.slack_id:
        raise RequestRefusedError(
            f"You asked for request #{request.id} yourself; to withdraw it, cancel it instead"
            f" (`/tokens cancel {request.id}` or Cancel in `/tokens requests`)."
        )
    if now >= request.expires_at:
        return _close(conn, settings, request, Outcome.EXPIRED, actor, now)
    why = (reason or "").strip() or "no reason given"
    return _close(conn, settings, request, Outcome.REJECTED, actor, now, why)


def cancel(
    conn: Connection, settings: Settings, actor: Person, request_id: int, clock: Callable[[], datetime]
) -> Decision:
    """The requester withdraws their own pending request."""
    request = _read_request(conn, settings, request_id, for_update=True)
    now = clock()
    if actor.slack_id != request.requester.slack_id:
        raise RequestRefusedError(
            f"Only {request.requester.name}, who asked for request #{request.id}, can cancel it."
            " Approvers can reject it instead."
        )
    _require_pending(request)
    if now >= request.expires_at:
        return _close(conn, settings, request, Outcome.EXPIRED, actor, now)
    return _close(conn, settings, request, Outcome.CANCELLED, actor, now)


def expire_due(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    """Close every overdue pending request; rows another replica is deciding right now are skipped."""
    rows = conn.execute(
        text(
            f"SELECT * FROM {_table(settings)} WHERE status = 'pending' AND expires_at <= :now"
            " ORDER BY id FOR UPDATE SKIP LOCKED"
        ),
        {"now": now},
    ).mappings()
    overdue = [_from_row(row) for row in rows]
    return [_close(conn, settings, request, Outcome.EXPIRED, SYSTEM, now).request for request in overdue]


def pending_requests(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    rows = conn.execute(
        text(f"SELECT * FROM {_table(settings)} WHERE status = 'pending' AND expires_at > :now ORDER BY id"),
        {"now": now},
    ).mappings()
    return [_from_row(row) for row in rows]


def get_request(conn: Connection, settings: Settings, request_id: int) -> ApprovalRequest:
    return _read_request(conn, settings, request_id, for_update=False)


def attach_message(conn: Connection, settings: Settings, request_id: int, channel: str, ts: str) -> None:
    """Remember where the approval message is, so every later decision can update it in place."""
    conn.execute(
        text(f"UPDATE {_table(settings)} SET channel = :c, message_ts = :ts WHERE id = :id"),
        {"c": channel, "ts": ts, "id": request_id},
    )


def _require_requester(settings: Settings, actor: Person) -> None:
    if actor.slack_id not in settings.tokens_admins:
        raise NotAllowedError(
            "Only tokens-bot admins can ask for grants, deductions and corrections. Ask an admin to add"
            " your Slack ID to TOKENS_ADMINS."
        )
    if not settings.tokens_approvals_channel:
        raise NotConfiguredError(
            "Approvals are not set up: TOKENS_APPROVALS_CHANNEL must name the channel where requests"
            " are posted. Nothing was requested."
        )


def _require_pending(request: ApprovalRequest) -> None:
    if request.status is RequestStatus.PENDING:
        return
    by = request.decider.name if request.decider else "tokens-bot"
    at = when(request.decided_at) if request.decided_at else "an unknown time"
    messages = {
        RequestStatus.APPLIED: f"Request #{request.id} was already approved by {by} at {at}.",
        RequestStatus.REJECTED: f"Request #{request.id} was already rejected by {by} at {at}"
        f" ({request.decision_reason}).",
        RequestStatus.CANCELLED: f"Request #{request.id} was cancelled by {by} at {at}.",
        RequestStatus.EXPIRED: f"Request #{request.id} expired at {when(request.expires_at)} and can no"
        " longer be decided. Ask again if it is still needed.",
        RequestStatus.STALE: f"Request #{request.id} went stale at {at}: the ledger changed after it was"
        " proposed. Run `/tokens reconcile` again for a fresh correction.",
    }
    raise RequestRefusedError(messages[request.status])


def _apply_adjustment(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    request: ApprovalRequest,
    actor: Person,
    now: datetime,
) -> Decision:
    assert request.delta is not None
    key, before = _current_row(conn, cols, request.user.user_id, lock=True)
    check_limits(settings, request.delta, before, cols)
    after = before + request.delta
    metadata = {
        **_approval_trail(request, actor, now),
        "reason": request.reason,
        "delta": request.delta,
        "balance_before": before,
        "balance_after": after,
    }
    actions = settings.tokens_grant_actions if request.delta > 0 else settings.tokens_deduct_actions
    row_id = insert_ledger_row(
        conn,
        cols,
        model=settings.tokens_ledger_model,
        user_id=request.user.user_id,
        action=actions[0],
        tokens=abs(request.delta),
        metadata=metadata,
        now=now,
    )
    conn.execute(
        text(
            f"UPDATE user_profiles p SET {REMAINING} = {_profile_cast(cols, REMAINING, 'r')}"
            f" WHERE {cols.is_profile_row('p')}"
        ),
        {"r": after, "k": key},
    )
    return _close(
        conn,
        settings,
        request,
        Outcome.APPLIED,
        actor,
        now,
        details={**metadata, "ledger_row_id": row_id},
        applied=(before, after, row_id),
    )


def _current_row(conn: Connection, cols: Columns, user_id: str, *, lock: bool) -> tuple[str, int]:
    """The user's current profile row (core.store.profile_columns) and its remaining balance as the bot reads it
    (NULL is 0); `lock` holds exactly that row until commit, and re-reads the balance under the lock."""
    found = conn.execute(
        text(
            f"SELECT p.bot_profile_key AS key, {cols.balance('p', REMAINING)} AS remaining"
            f" FROM {cols.current_profiles('p')} WHERE p.user_id = {cols.user_param(cols.profiles)}"
        ),
        {"u": user_id},
    ).one()
    if not lock:
        return str(found.key), int(found.remaining)
    locked = (
        conn.execute(
            text(
                f"SELECT {cols.balance('p', REMAINING)} FROM user_profiles p"
                f" WHERE {cols.is_profile_row('p')} FOR UPDATE"
            ),
            {"k": found.key},
        )
        .scalars()
        .all()
    )
    if len(locked) != 1:
        raise ProductDataError(
            f"user_profiles is a view without a key and holds {len(locked):,} rows for this user, so"
            " tokens-bot cannot change exactly one of them. Nothing was changed."
        )
    return str(found.key), int(locked[0])


def _require_ledger_writable(cols: Columns, settings: Settings, delta: int) -> None:
    """Refused when asked, not at the first click: the product's ledger would not take the bot's row."""
    action = (settings.tokens_grant_actions if delta > 0 else settings.tokens_deduct_actions)[:1]
    if not action:
        raise NotConfiguredError(
            f"No action type is configured for a {'grant' if delta > 0 else 'deduction'}"
            f" ({'TOKENS_GRANT_ACTIONS' if delta > 0 else 'TOKENS_DEDUCT_ACTIONS'} is empty). Nothing was requested."
        )
    problems = ledger_write_problems(cols, action)
    if problems:
        raise ProductDataError(
            "tokens-bot could not record this change in the product's ledger, so it was not requested: "
            + "; ".join(problems)
            + ". `tokens-bot doctor` lists what the bot needs."
        )


def _profile_cast(cols: Columns, name: str, param: str) -> str:
    return f"CAST(:{param} AS {cols.profiles.column(name).type})"


def _apply_correction(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    request: ApprovalRequest,
    correction: Correction,
    actor: Person,
    now: datetime,
) -> Decision:
    # The profile lock comes first: a product write already holding it commits before the ledger is read.
    cols = Columns.of(shape, settings)
    key, _ = _current_row(conn, cols, request.user.user_id, lock=True)
    image = conn.execute(
        text(f"SELECT to_jsonb(p) FROM user_profiles p WHERE {cols.is_profile_row('p')}"), {"k": key}
    ).scalar_one()
    report = reconcile(conn, shape, settings, request.user.user_id, correction.explicit_initial_grant)
    b = report.balance
    if report.snapshot != correction.snapshot or (
        b.expected_remaining,
        b.calculated_used,
        b.calculated_cost,
    ) != (
        correction.remaining,
        correction.used,
        correction.cost,
    ):
        stale = {
            "proposed": correction.snapshot.model_dump(mode="json"),
            "now": report.snapshot.model_dump(mode="json"),
        }
        return _close(conn, settings, request, Outcome.STALE, actor, now, details=stale)
    check_correction_limits(settings, cols, b)
    targets = {REMAINING: "r", USED: "used", COST: "c"}
    assignments = ", ".join(
        f"{name} = {_profile_cast(cols, name, param)}"
        for name, param in targets.items()
        if cols.profiles.has(name)
    )
    conn.execute(
        text(f"UPDATE user_profiles p SET {assignments} WHERE {cols.is_profile_row('p')}"),
        {"r": correction.remaining, "used": correction.used, "c": correction.cost, "k": key},
    )
    details = {
        **_approval_trail(request, actor, now),
        "initial_grant": correction.initial_grant.model_dump(mode="json"),
        "ledger": correction.snapshot.model_dump(mode="json"),
        "before": image,
        "after": {
            "vibe_assistant_tokens_remaining": correction.remaining,
            "vibe_assistant_tokens_used": correction.used,
            "vibe_assistant_total_cost": str(correction.cost),
        },
    }
    return _close(
        conn,
        settings,
        request,
        Outcome.APPLIED,
        actor,
        now,
        details=details,
        applied=(b.current_remaining, correction.remaining, None),
    )


def _approval_trail(request: ApprovalRequest, actor: Person, now: datetime) -> dict[str, Any]:
    """Who asked, who approved and when, on every applied request; `source` and `request_id` are also
    what marks a ledger row as written by tokens-bot (core.store.product.WRITTEN_BY_BOT)."""
    return {
        "source": "slack",
        "request_id": request.id,
        "requested_by": request.requester.audit(),
        "approved_by": actor.audit(),
        "requested_at": request.requested_at.isoformat(),
        "approved_at": now.isoformat(),
    }


_STATUS = {
    Outcome.APPLIED: RequestStatus.APPLIED,
    Outcome.REJECTED: RequestStatus.REJECTED,
    Outcome.CANCELLED: RequestStatus.CANCELLED,
    Outcome.EXPIRED: RequestStatus.EXPIRED,
    Outcome.STALE: RequestStatus.STALE,
}


def _close(
    conn: Connection,
    settings: Settings,
    request: ApprovalRequest,
    outcome: Outcome,
    actor: Person,
    now: datetime,
    reason: str | None = None,
    *,
    details: dict[str, Any] | None = None,
    applied: tuple[int, int, str | None] | None = None,
) -> Decision:
    """Record a decision on the request row and in the audit log; the caller's transaction commits both."""
    before, after, row_id = applied or (None, None, None)
    # An expiry is the clock's doing: the request records no decider, the audit log who noticed it.
    decider = None if outcome is Outcome.EXPIRED else actor
    conn.execute(
        text(
            f"UPDATE {_table(settings)} SET status = :s, decided_by = :by, decided_by_name = :name,"
            " decided_at = :at, decision_reason = :why, balance_before = :before, balance_after = :after,"
            " ledger_row_id = :row WHERE id = :id"
        ),
        {
            "s": _STATUS[outcome].value,
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
    event = "corrected" if outcome is Outcome.APPLIED and request.correction is not None else outcome.value
    _audit(
        conn,
        settings,
        request.id,
        event,
        actor,
        now,
        {**(details or {}), **({"reason": reason} if reason else {})},
    )
    return Decision(outcome=outcome, request=get_request(conn, settings, request.id), actor=actor)


def _insert_request(
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
    _audit(conn, settings, int(request_id), "requested", actor, now, details)
    return get_request(conn, settings, int(request_id))


def _audit(
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


def _read_request(
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


def _snapshot(conn: Connection, cols: Columns, user_id: str) -> LedgerSnapshot:
    row = conn.execute(
        text(
            f"SELECT count(*) AS rows, max({cols.shown_time('t')}) AS last_at FROM token_usage t"
            f" WHERE t.user_id = {cols.user_param(cols.ledger)}"
        ),
        {"u": user_id},
    ).one()
    return LedgerSnapshot(rows=int(row.rows), last_at=row.last_at)


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
