"""A fix's writes for one user: the ledger rows it inserts (never an UPDATE or DELETE of the ledger) and
the profile values it sets, checked against the values it was planned on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from core.domain.errors import InvalidAdjustmentError, ProductDataError
from core.domain.fix_plans import FixPlan, LedgerEntry, ProfileValues
from core.domain.fixes import FixKind
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.ledger_writes import current_row, insert_ledger_row, require_fits, set_balances, set_remaining


def lock_profile(conn: Connection, cols: Columns, user_id: str) -> tuple[str, ProfileValues, Any]:
    """The user's current profile row, locked until commit: its key, its values as the check reads them
    (NULL is 0) and the whole row as JSON (the item's before-image), read under the lock in one statement."""
    key, _ = current_row(conn, cols, user_id, lock=False)
    rows = conn.execute(
        text(
            f"SELECT {cols.profile_balances('p')}, to_jsonb(p) AS image FROM user_profiles p"
            f" WHERE {cols.is_profile_row('p')} FOR UPDATE"
        ),
        {"k": key},
    ).all()
    if len(rows) != 1:
        raise ProductDataError(
            f"user_profiles is a view without a key and holds {len(rows):,} rows for this user, so"
            " tokens-bot cannot change exactly one of them. Nothing was changed."
        )
    [row] = rows
    values = ProfileValues(
        remaining=int(row.current_remaining), used=int(row.current_used), cost=row.current_cost
    )
    return key, values, row.image


def entry_metadata(plan: FixPlan, entry: LedgerEntry, trail: dict[str, Any]) -> dict[str, Any]:
    """What marks a fix's row: its cause and kind, and the row it reverses or that it is a backfill."""
    marks: dict[str, Any] = {"reverses": entry.reverses} if entry.reverses else {"backfill": True}
    if plan.option.kind is FixKind.ADJUSTMENT:
        marks = {"delta": entry.tokens}
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
