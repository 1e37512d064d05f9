"""A fix's writes for one user: the ledger rows it inserts (never an UPDATE or DELETE of the ledger) and
the profile values it sets, checked against the values it was planned on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from core.domain.errors import InvalidAdjustmentError, ProductDataError
from core.domain.fix_plans import FixPlan, LedgerEntry, ProfileValues
from core.domain.fixes import FixKind
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.ledger_writes import (
    current_row,
    insert_ledger_row,
    lock_profile_row,
    require_fits,
    set_balances,
    set_remaining,
)


def lock_profile(conn: Connection, cols: Columns, user_id: str) -> tuple[str, ProfileValues, Any]:
    """The user's current profile row, locked until commit: its key, its values as the check reads them
    (NULL is 0) and the whole row as JSON (the item's before-image), read under the lock in one statement."""
    key, _ = current_row(conn, cols, user_id, lock=False)
    row = lock_profile_row(conn, cols, key, f"{cols.profile_balances('p')}, to_jsonb(p) AS image")
    values = ProfileValues(
        remaining=int(row.current_remaining), used=int(row.current_used), cost=row.current_cost
    )
    return key, values, row.image


def entry_metadata(plan: FixPlan, entry: LedgerEntry, trail: dict[str, Any]) -> dict[str, Any]:
    """What marks a fix's row: its cause and kind, and the delta of an adjustment, the row a reversal
    reverses, or that it is a backfill."""
    marks: dict[str, Any]
    if plan.option.kind is FixKind.ADJUSTMENT:
        marks = {"delta": entry.tokens}
    elif entry.reverses:
        marks = {"reverses": entry.reverses}
    else:
        marks = {"backfill": True}
    return {**trail, "fix": plan.cause.value, "fix_kind": plan.option.kind.value, **marks}


def write_plan(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    plan: FixPlan,
    key: str,
    trail: dict[str, Any],
    now: datetime,
) -> list[str]:
    """Insert the plan's ledger rows and set its profile values; returns the new rows' ids."""
    require_plan_within_limits(cols, settings, plan)
    ids = [
        insert_ledger_row(
            conn,
            cols,
            model=entry.model or settings.tokens_ledger_model,
            user_id=plan.user.user_id,
            action=entry.action,
            tokens=entry.tokens,
            metadata=entry_metadata(plan, entry, trail),
            now=now,
            cost=entry.cost,
        )
        for entry in plan.entries
    ]
    if plan.option.kind is FixKind.PROFILE_CORRECTION:
        set_balances(
            conn, cols, key, remaining=plan.after.remaining, used=plan.after.used, cost=plan.after.cost
        )
    elif plan.after.remaining != plan.before.remaining:
        set_remaining(conn, cols, key, plan.after.remaining)
    return ids


def require_plan_within_limits(cols: Columns, settings: Settings, plan: FixPlan) -> None:
    """TOKENS_MAX_ADJUSTMENT bounds every fix as it bounds an adjustment; new values must fit their columns."""
    moves = [
        abs(plan.after.remaining - plan.before.remaining),
        abs(plan.after.used - plan.before.used),
        *(abs(e.tokens) for e in plan.entries),
    ]
    if max(moves, default=0) > settings.tokens_max_adjustment:
        raise InvalidAdjustmentError(
            f"This fix moves {max(moves):,} tokens for {plan.user.label}, over the limit of"
            f" {settings.tokens_max_adjustment:,} per change (TOKENS_MAX_ADJUSTMENT). Nothing was changed."
        )
    require_fits(cols, REMAINING, plan.after.remaining, "The remaining balance")
    require_fits(cols, USED, plan.after.used, "The used total")
    require_fits(cols, COST, plan.after.cost, "The total cost")


def rehearse_plan(
    conn: Connection, cols: Columns, settings: Settings, plan: FixPlan, key: str, now: datetime
) -> None:
    """Write the plan inside a savepoint and roll it back: the product's own constraints (CHECK lists,
    NOT NULL, triggers) judge the rows now, when the fix is proposed, not first when it is approved."""
    savepoint = conn.begin_nested()
    try:
        write_plan(conn, cols, settings, plan, key, {"rehearsal": True}, now)
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        detail = str(getattr(diag, "message_primary", None) or exc.orig).strip()
        raise ProductDataError(
            f"The product's database would refuse this fix's rows ({detail}), so nothing was proposed."
            ' README "Fixing what the bot finds" says which rows each fix writes.'
        ) from exc
    finally:
        if savepoint.is_active:
            savepoint.rollback()
