"""Applying an approved request: the ledger row, the balance and the request's new state, in the caller's
one transaction, under the locks and re-checks DESIGN.md asks for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from core.domain.approvals import (
    ApprovalRequest,
    Correction,
    Decision,
    Person,
    RequestStatus,
    approval_trail,
    check_correction_limits,
    check_limits,
)
from core.services.reconcile import reconcile
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.ledger_writes import (
    current_row,
    insert_ledger_row,
    profile_image,
    require_balances_fit,
    require_fits_remaining,
    set_balances,
    set_remaining,
)
from core.store.product import ProductShape
from core.store.requests import decide


def apply_adjustment(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    request: ApprovalRequest,
    actor: Person,
    now: datetime,
) -> Decision:
    assert request.delta is not None
    key, before = current_row(conn, cols, request.user.user_id, lock=True)
    check_limits(settings, request.delta, before)
    require_fits_remaining(cols, before + request.delta)
    after = before + request.delta
    metadata = {
        **approval_trail(request, actor, now),
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
    set_remaining(conn, cols, key, after)
    return decide(
        conn,
        settings,
        request,
        RequestStatus.APPLIED,
        actor,
        now,
        details={**metadata, "ledger_row_id": row_id},
        applied=(before, after, row_id),
    )


def apply_correction(
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
    key, _ = current_row(conn, cols, request.user.user_id, lock=True)
    image = profile_image(conn, cols, key)
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
        return decide(conn, settings, request, RequestStatus.STALE, actor, now, details=stale)
    check_correction_limits(settings, b)
    require_balances_fit(cols, b)
    set_balances(conn, cols, key, remaining=correction.remaining, used=correction.used, cost=correction.cost)
    details = {
        **approval_trail(request, actor, now),
        "initial_grant": correction.initial_grant.model_dump(mode="json"),
        "ledger": correction.snapshot.model_dump(mode="json"),
        "before": image,
        "after": {REMAINING: correction.remaining, USED: correction.used, COST: str(correction.cost)},
    }
    return decide(
        conn,
        settings,
        request,
        RequestStatus.APPLIED,
        actor,
        now,
        details=details,
        applied=(b.current_remaining, correction.remaining, None),
    )
