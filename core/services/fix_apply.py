"""Applying an approved fix: one item per transaction (the caller's), re-checked under the profile row's
lock, then every applied user verified against the ledger before the request is closed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from core.domain.approvals import SYSTEM, ApprovalRequest, Decision, Person, RequestStatus, approval_trail
from core.domain.balance import judge
from core.domain.errors import RequestRefusedError, TokensBotError
from core.domain.fix_batches import RECONCILED, BatchProgress, ItemState
from core.domain.fix_plans import FixPlan, ProfileValues
from core.domain.fixes import CAUSE_OF
from core.domain.models import LedgerSnapshot, Verdict
from core.domain.reports import DiscrepancyRow
from core.settings import Settings
from core.store import discrepancies, fix_items
from core.store.columns import Columns
from core.store.fix_writes import lock_profile, write_plan
from core.store.ledger import ledger_snapshot
from core.store.product import ProductShape
from core.store.requests import audit, decide, read_request


def start_applying(
    conn: Connection, settings: Settings, request: ApprovalRequest, actor: Person, now: datetime
) -> Decision:
    """The approval of a fix: the request moves to `applying`; its items are applied one by one after."""
    return decide(conn, settings, request, RequestStatus.APPLYING, actor, now)


def require_not_in_batch(conn: Connection, settings: Settings, request: ApprovalRequest, email: str) -> None:
    """Nobody approves a batch that changes their own balance, as nobody approves their own grant."""
    own = fix_items.user_with_email(conn, settings, request.id, email)
    if own is not None:
        raise RequestRefusedError(
            f"Request #{request.id} includes {own}, which is your own email address: nobody approves a change"
            " to their own balance. Another approver has to decide it."
        )


def apply_next_item(
    conn: Connection, shape: ProductShape, settings: Settings, request: ApprovalRequest, now: datetime
) -> bool:
    """Apply the next pending item of an approved fix (`request`, read when applying began), or say there
    is none; the caller commits.

    The item is re-checked under the profile row's lock: a ledger or profile that moved since the
    proposal makes it stale (reported, never overwritten); a write the product refuses fails only it.
    """
    if request.status is not RequestStatus.APPLYING or request.decider is None:
        return False
    request_id = request.id
    claimed = fix_items.claim_next_item(conn, settings, request_id)
    if claimed is None:
        return False
    position, plan = claimed
    cols = Columns.of(shape, settings)
    savepoint = conn.begin_nested()
    try:
        key, values, image = lock_profile(conn, cols, plan.user.user_id)
        snapshot = ledger_snapshot(conn, cols, plan.user.user_id)
        if snapshot != plan.snapshot or values != plan.before:
            savepoint.rollback()
            fix_items.mark_item(
                conn,
                settings,
                request_id,
                position,
                ItemState.STALE,
                now,
                outcome=_staleness(plan, snapshot, values),
            )
            return True
        trail = {
            **approval_trail(request, request.decider, request.decided_at or now),
            "applied_at": now.isoformat(),
        }
        ids = write_plan(conn, cols, settings, plan, key, trail, now)
        savepoint.commit()
    except (DBAPIError, TokensBotError) as exc:
        if savepoint.is_active:
            savepoint.rollback()
        fix_items.mark_item(
            conn, settings, request_id, position, ItemState.FAILED, now, outcome=_failure(exc)
        )
        return True
    fix_items.mark_item(
        conn, settings, request_id, position, ItemState.APPLIED, now, before_image=image, ledger_row_ids=ids
    )
    audit(
        conn,
        settings,
        request_id,
        "fix_applied",
        request.decider,
        now,
        {
            "user_id": plan.user.user_id,
            "ledger_row_ids": ids,
            "before": image,
            "plan": plan.model_dump(mode="json"),
        },
    )
    return True


def _staleness(plan: FixPlan, snapshot: LedgerSnapshot, values: ProfileValues) -> str:
    if snapshot != plan.snapshot:
        return f"the ledger changed since the proposal ({snapshot.rows - plan.snapshot.rows:+,} rows); nothing was written"
    return "the profile's balance changed since the proposal; nothing was written"


def _failure(exc: Exception) -> str:
    if isinstance(exc, DBAPIError):
        diag = getattr(exc.orig, "diag", None)
        return f"the database refused it: {str(getattr(diag, 'message_primary', None) or exc.orig).strip()}"
    return str(exc)


def finish_fix(
    conn: Connection, shape: ProductShape, settings: Settings, request_id: int, now: datetime
) -> tuple[Decision | None, BatchProgress]:
    """Once no item is pending: verify every applied user against the ledger, record it, close the request.

    Returns no decision when the request is not (or no longer) being applied, e.g. another worker closed it.
    """
    request = read_request(conn, settings, request_id, for_update=True)
    current = fix_items.progress(conn, settings, request_id)
    if request.status is not RequestStatus.APPLYING or not current.done or request.fix is None:
        return None, current
    users = fix_items.applied_user_ids(conn, settings, request_id)
    rows = {row.user.user_id: row for row in discrepancies.read_discrepancies(conn, shape, settings, users)}
    cause = request.fix.cause
    results: dict[str, tuple[bool, str]] = {}
    for user_id in users:
        row = rows.get(user_id)
        if row is None:
            results[user_id] = (False, "the user's profile is gone; nothing to verify")
            continue
        fixed = all(CAUSE_OF[f.kind] is not cause for f in row.findings)
        verdict = judge(
            row.balance, row.findings, settings.tokens_problem_threshold, partial=shape.hidden_rows
        )
        why = (
            RECONCILED if verdict is Verdict.RECONCILED else _still_differing(row, partial=shape.hidden_rows)
        )
        results[user_id] = (fixed, why)
    fix_items.record_verification(conn, settings, request_id, results)
    final = fix_items.progress(conn, settings, request_id)
    details = final.model_dump(mode="json", exclude={"problems"})
    decision = decide(
        conn, settings, request, RequestStatus.APPLIED, request.decider or SYSTEM, now, details=details
    )
    return decision, final


def _still_differing(row: DiscrepancyRow, *, partial: bool) -> str:
    b = row.balance
    found = "; ".join(f.kind.value.replace("_", " ") for f in row.findings) or "no cause found"
    hidden = "; rows hidden from the bot's role by row-level security could disagree" if partial else ""
    return f"still differs: used {b.used_discrepancy:+,}, remaining {b.remaining_discrepancy:+,} ({found}){hidden}"
