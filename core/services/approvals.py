"""Two-person approval, the use cases: asking for adjustments and corrections, and deciding each exactly once.

Every function here runs inside the caller's one transaction (see core.services.service); the decisions lock
the request row first, so any number of clicks on any number of replicas queue on that lock and all
but the first find the request already decided.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from sqlalchemy import Connection

from core.domain.approvals import (
    SYSTEM,
    ApprovalRequest,
    Correction,
    Decision,
    Person,
    RequestKind,
    RequestStatus,
    check_correction_limits,
    check_limits,
    require_pending,
    require_requester,
)
from core.domain.errors import (
    InvalidAdjustmentError,
    NotAllowedError,
    RequestRefusedError,
    StaleCorrectionError,
    UsageError,
)
from core.domain.models import LedgerSnapshot
from core.services.apply import apply_adjustment, apply_correction
from core.services.fix_apply import require_not_in_batch, start_applying
from core.services.reconcile import reconcile
from core.settings import Settings
from core.store.columns import Columns
from core.store.ledger_writes import (
    current_row,
    require_balances_fit,
    require_fits_remaining,
    require_ledger_writable,
)
from core.store.product import ProductShape
from core.store.requests import audit, decide, insert_request, overdue_requests, read_request, record_vote
from core.store.users import find_user


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
    require_requester(settings, actor)
    reason = reason.strip()
    if not reason:
        raise UsageError("A reason is required: it goes into the ledger row and the audit trail.")
    cols = Columns.of(shape, settings)
    ref = find_user(conn, cols, user)
    _, remaining = current_row(conn, cols, ref.user_id, lock=False)
    check_limits(settings, delta, remaining)
    require_fits_remaining(cols, remaining + delta)
    require_ledger_writable(cols, settings, delta)
    return insert_request(
        conn,
        settings,
        actor,
        ref,
        RequestKind.ADJUSTMENT,
        reason,
        int(remaining),
        now,
        delta=delta,
        quorum=settings.quorum_for(delta),
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
    require_requester(settings, actor)
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
    check_correction_limits(settings, b)
    require_balances_fit(Columns.of(shape, settings), b)
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
    return insert_request(
        conn,
        settings,
        actor,
        report.user,
        RequestKind.CORRECTION,
        reason,
        b.current_remaining,
        now,
        correction=correction,
        quorum=settings.quorum_for(
            max(abs(b.expected_remaining - b.current_remaining), abs(b.calculated_used - b.current_used))
        ),
    )


def approve(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    request_id: int,
    clock: Callable[[], datetime],
) -> Decision:
    """Vote for a request, and apply it with the vote that completes its quorum: ledger row, balance and
    the request's new state commit together or not at all. Earlier votes only record themselves.

    The clock is read once the request is locked: a click that waited behind another one's lock is
    judged (expiry, decided_at, approved_at) at the moment it actually decides.
    """
    if actor.slack_id not in settings.approvers:
        raise NotAllowedError(
            "Only tokens-bot approvers can approve requests. Ask an admin to add your Slack ID to"
            " TOKENS_APPROVERS."
        )
    request = read_request(conn, settings, request_id, for_update=True)
    now = clock()
    require_pending(request)
    if actor.slack_id == request.requester.slack_id:
        raise RequestRefusedError(
            f"You asked for request #{request.id} yourself; it needs a second person's approval."
        )
    if now >= request.expires_at:
        return decide(conn, settings, request, RequestStatus.EXPIRED, actor, now)
    if actor.email is None:
        raise RequestRefusedError(
            "Slack did not tell tokens-bot your email address (Slack was unreachable, or the app lacks the"
            " users:read.email scope),"
            " so it cannot check that you are not approving a grant to yourself. Nothing was changed."
        )
    if request.fix is not None and request.fix.is_batch:
        require_not_in_batch(conn, settings, request, actor.email)
    else:
        target = find_user(conn, Columns.of(shape, settings), request.user.user_id)
        if target.email is not None and target.email.lower() == actor.email.lower():
            raise RequestRefusedError(
                f"Request #{request.id} changes the balance of {target.email}, which is your own email"
                " address: nobody approves their own grant. Another approver has to decide it."
            )
    if any(vote.voter.slack_id == actor.slack_id for vote in request.votes):
        raise RequestRefusedError(
            f"You already approved request #{request.id}; it needs {request.votes_missing:,} more"
            f" approval{'s' if request.votes_missing != 1 else ''} from other approvers."
        )
    record_vote(conn, settings, request, actor, now)
    if request.votes_missing > 1:
        audit(
            conn,
            settings,
            request.id,
            "voted",
            actor,
            now,
            {"votes": len(request.votes) + 1, "quorum": request.quorum},
        )
        return Decision(
            outcome=RequestStatus.PENDING,
            request=read_request(conn, settings, request.id, for_update=False),
            actor=actor,
        )
    if request.fix is not None:
        return start_applying(conn, settings, request, actor, now)
    if request.correction is not None:
        return apply_correction(conn, shape, settings, request, request.correction, actor, now)
    return apply_adjustment(conn, Columns.of(shape, settings), settings, request, actor, now)


def reject(
    conn: Connection,
    settings: Settings,
    actor: Person,
    request_id: int,
    reason: str,
    clock: Callable[[], datetime],
) -> Decision:
    """Close a request without applying it, for a reason that is recorded and shown: never without one."""
    why = reason.strip()
    if not why:
        raise UsageError("A rejection needs a reason: it is recorded and shown on the request.")
    if actor.slack_id not in settings.approvers:
        raise NotAllowedError("Only tokens-bot approvers can reject requests.")
    request = read_request(conn, settings, request_id, for_update=True)
    now = clock()
    require_pending(request)
    if actor.slack_id == request.requester.slack_id:
        raise RequestRefusedError(
            f"You asked for request #{request.id} yourself; to withdraw it, cancel it instead"
            f" (`/tokens cancel {request.id}` or Cancel in `/tokens requests`)."
        )
    if now >= request.expires_at:
        return decide(conn, settings, request, RequestStatus.EXPIRED, actor, now)
    return decide(conn, settings, request, RequestStatus.REJECTED, actor, now, why)


def cancel(
    conn: Connection, settings: Settings, actor: Person, request_id: int, clock: Callable[[], datetime]
) -> Decision:
    """The requester withdraws their own pending request."""
    request = read_request(conn, settings, request_id, for_update=True)
    now = clock()
    if actor.slack_id != request.requester.slack_id:
        raise RequestRefusedError(
            f"Only {request.requester.name}, who asked for request #{request.id}, can cancel it."
            " Approvers can reject it instead."
        )
    require_pending(request)
    if now >= request.expires_at:
        return decide(conn, settings, request, RequestStatus.EXPIRED, actor, now)
    return decide(conn, settings, request, RequestStatus.CANCELLED, actor, now)


def expire_due(conn: Connection, settings: Settings, now: datetime) -> list[ApprovalRequest]:
    """Close every overdue pending request; rows another replica is deciding right now are skipped."""
    return [
        decide(conn, settings, request, RequestStatus.EXPIRED, SYSTEM, now).request
        for request in overdue_requests(conn, settings, now)
    ]
