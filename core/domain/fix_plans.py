"""A fix as the exact writes it will make for one user: the ledger rows it inserts, the profile values
before and after, and the ledger position it was computed at (any change since makes it stale).

Ledger rows are only ever inserted (README "Fixing what the bot finds" gives the shapes):
- a duplicated usage row is reversed by a row of the same action type and model with the negated
  tokens and cost, so the guide's sum of usage drops by exactly the duplicate;
- a repeated grant is reversed by a deduction row of the same tokens;
- a missing grant is backfilled as a grant row, missing usage as a usage row;
each carrying `fix` (the cause), and `reverses` (the row id) or `backfill: true`, in its metadata.
"""

from __future__ import annotations

from decimal import Decimal

from core.domain.fixes import Cause, FixKind, FixOption
from core.domain.models import Balance, FindingKind, Frozen, LedgerSnapshot, UserRef

# The action type of backfilled usage: the ledger cannot say which operations they were.
BACKFILL_USAGE_ACTION = "usage_backfill"


class DuplicateRow(Frozen):
    """A ledger row the signals flag as a duplicate, as stored (cost in the ledger's own unit)."""

    id: str
    action: str | None
    model: str | None
    tokens: int
    cost: Decimal | None
    grant: bool


class LedgerEntry(Frozen):
    """One row a fix inserts; `tokens` and `cost` (ledger unit) are signed as written."""

    action: str | None
    tokens: int
    cost: Decimal | None = None
    model: str | None = None
    reverses: str | None = None


class ProfileValues(Frozen):
    remaining: int
    used: int
    cost: Decimal


class FixPlan(Frozen):
    user: UserRef
    option: FixOption
    snapshot: LedgerSnapshot
    before: ProfileValues
    after: ProfileValues
    entries: tuple[LedgerEntry, ...] = ()

    @property
    def cause(self) -> Cause:
        return self.option.cause

    @property
    def remaining_delta(self) -> int:
        return self.after.remaining - self.before.remaining


class FixActions(Frozen):
    """The action types and model the bot writes, from settings (TOKENS_GRANT_ACTIONS, ...)."""

    grant: str
    deduct: str
    model: str
    cost_divisor: int


def profile_values(balance: Balance) -> ProfileValues:
    return ProfileValues(
        remaining=balance.current_remaining, used=balance.current_used, cost=balance.current_cost
    )


def plan_fix(
    user: UserRef,
    option: FixOption,
    balance: Balance,
    snapshot: LedgerSnapshot,
    duplicates: list[DuplicateRow],
    actions: FixActions,
) -> FixPlan:
    """The writes of `option` for this user, from the values the fix was judged on."""
    before = profile_values(balance)
    after = before
    entries: tuple[LedgerEntry, ...] = ()
    match option.kind:
        case FixKind.PROFILE_CORRECTION:
            after = ProfileValues(
                remaining=balance.expected_remaining,
                used=balance.calculated_used,
                cost=balance.calculated_cost,
            )
        case FixKind.LEDGER_REVERSAL:
            grants = option.finding is FindingKind.DUPLICATE_GRANT
            entries = tuple(_reversal(row, actions) for row in duplicates if row.grant is grants)
        case FixKind.LEDGER_BACKFILL if option.cause is Cause.UNLOGGED_GRANT:
            entries = (LedgerEntry(action=actions.grant, tokens=option.tokens, model=actions.model),)
        case FixKind.LEDGER_BACKFILL:
            cents = (balance.current_cost - balance.calculated_cost) * actions.cost_divisor
            entries = (
                LedgerEntry(
                    action=BACKFILL_USAGE_ACTION, tokens=option.tokens, cost=cents, model=actions.model
                ),
            )
        case FixKind.ADJUSTMENT:
            entries = (LedgerEntry(action=actions.grant, tokens=option.tokens, model=actions.model),)
            after = before.model_copy(update={"remaining": before.remaining + option.tokens})
    return FixPlan(user=user, option=option, snapshot=snapshot, before=before, after=after, entries=entries)


def _reversal(row: DuplicateRow, actions: FixActions) -> LedgerEntry:
    if row.grant:
        return LedgerEntry(action=actions.deduct, tokens=row.tokens, model=actions.model, reverses=row.id)
    return LedgerEntry(
        action=row.action,
        tokens=-row.tokens,
        cost=-row.cost if row.cost is not None else None,
        model=row.model,
        reverses=row.id,
    )
