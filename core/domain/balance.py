"""The balance arithmetic of the guide's Steps 1 and 4: the initial grant, the expected balance, the verdict.

Pure: the sums come from a query (core.store.balances or core.store.scan), the rules live here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.domain.models import Balance, CostUnit, Finding, FindingKind, GrantSource, InitialGrant, Verdict
from core.domain.tiers import Tiers


def balance_from_sums(
    row: Mapping[str, Any],
    tiers: Tiers,
    *,
    cost_unit: CostUnit,
    gross_grants: int,
    explicit_initial_grant: int | None = None,
) -> Balance:
    """The Balance of one user from the ledger sums a query produced; the check and the scan share it.

    After a reset (TOKENS_RESET_ACTIONS) the reset's tokens take the initial grant's place and the sums
    that make the expected balance start after it; used and cost stay lifetime totals.
    """
    if row["reset_tokens"] is not None:
        grant = reset_grant(int(row["reset_tokens"]), row["reset_action"], row["reset_at"])
    else:
        grant = choose_initial_grant(
            explicit=explicit_initial_grant,
            tier=row["tier"],
            first_admin_grant=row["first_grant"],
            assumed_grant_logged=row["assumed_grant_logged"],
            tiers=tiers,
        )
    # Never counted twice: a grant row that is the initial grant is not also an extra grant.
    admin_grants = gross_grants - (
        grant.tokens if grant.logged and grant.source is not GrantSource.RESET else 0
    )
    calculated_used, counted_used = int(row["calculated_used"]), int(row["counted_used"])
    admin_deductions = int(row["admin_deductions"])
    unset = tuple(name for name in ("remaining", "used", "cost") if row[f"{name}_unset"])
    return Balance(
        unset=unset,
        cost_unit=cost_unit,
        current_used=int(row["current_used"]),
        calculated_used=calculated_used,
        used_since_reset=counted_used if grant.source is GrantSource.RESET else None,
        current_cost=Decimal(row["current_cost"]),
        calculated_cost=Decimal(row["calculated_cost"]),
        current_remaining=int(row["current_remaining"]),
        expected_remaining=grant.tokens + admin_grants - counted_used - admin_deductions,
        initial_grant=grant,
        admin_grants=admin_grants,
        admin_deductions=admin_deductions,
        ledger_rows=int(row["ledger_rows"]),
        failed_rows=int(row["failed_rows"]),
    )


def reset_grant(tokens: int, action: str, at: datetime | None) -> InitialGrant:
    when = f" on {at:%Y-%m-%d}" if at is not None else ""
    return InitialGrant(
        tokens=tokens,
        source=GrantSource.RESET,
        logged=True,
        description=f"{tokens:,} tokens set by {action}{when}; grants, deductions and usage count from there",
    )


def choose_initial_grant(
    *,
    explicit: int | None,
    tier: Any,
    first_admin_grant: int | None,
    assumed_grant_logged: bool,
    tiers: Tiers,
) -> InitialGrant:
    """An operator's explicit value wins, then the membership tier, then the first logged grant.

    When the explicit or tier amount also appears as a logged grant, that row is taken to be the initial
    grant (the product often logs it), so it is not counted a second time. Grants tokens-bot applied
    itself never count as that row (see Columns.written_by_bot): they are approved extra grants.
    """
    same = "; a logged grant of the same amount is taken to be it"
    if explicit is not None:
        return InitialGrant(
            tokens=explicit,
            source=GrantSource.EXPLICIT,
            logged=assumed_grant_logged,
            description=f"{explicit:,} tokens, as given" + (same if assumed_grant_logged else ""),
        )
    if isinstance(tier, str) and tier in tiers.amounts:
        amount = tiers.amounts[tier]
        return InitialGrant(
            tokens=amount,
            source=GrantSource.TIER,
            logged=assumed_grant_logged,
            description=f"{amount:,} tokens for the {tiers.name(tier)} membership tier"
            + (same if assumed_grant_logged else ""),
        )
    if first_admin_grant is not None:
        return InitialGrant(
            tokens=int(first_admin_grant),
            source=GrantSource.FIRST_ADMIN_GRANT,
            logged=True,
            description=f"{int(first_admin_grant):,} tokens, the first grant in the ledger",
        )
    return InitialGrant(
        tokens=0,
        source=GrantSource.NONE,
        logged=False,
        description="unknown: no tier and no grant, so 0 was assumed",
    )


def judge(
    balance: Balance, findings: list[Finding], problem_threshold: int, *, partial: bool = False
) -> Verdict:
    """A plain verdict: any drift or finding is minor; beyond the threshold, or a negative balance, a problem.

    Cost drift alone stays minor: it is money mis-recorded, not tokens a user gained or lost. A `partial`
    view (rows the bot's role cannot see) is never called reconciled: the hidden rows could disagree.
    """
    worst = max(
        abs(balance.used_discrepancy),
        abs(balance.remaining_discrepancy),
        *(f.tokens for f in findings if f.kind is not FindingKind.COST_DRIFT),
    )
    if worst > problem_threshold or balance.current_remaining < 0:
        return Verdict.PROBLEM
    if worst or balance.cost_discrepancy or findings or partial:
        return Verdict.MINOR
    return Verdict.RECONCILED
