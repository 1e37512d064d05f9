"""The balance arithmetic of the guide's Steps 1 and 4, computed by the database for one user."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, TextClause, text

from core.models import Balance, Finding, FindingKind, GrantSource, InitialGrant, Verdict
from core.product import CONSUMPTION, WRITTEN_BY_BOT, ProductShape
from core.settings import Settings


@lru_cache
def _balance_sql(shape: ProductShape) -> TextClause:
    """Built and parsed once per product shape."""
    tier = shape.tier_sql
    return text(f"""
    SELECT p.vibe_assistant_tokens_used AS current_used,
           p.vibe_assistant_total_cost AS current_cost,
           p.vibe_assistant_tokens_remaining AS current_remaining,
           {tier} AS tier,
           l.*
    FROM user_profiles p
    CROSS JOIN LATERAL (
        SELECT coalesce(CAST(:explicit AS bigint), CAST(CAST(:tiers AS jsonb) ->> {tier} AS bigint)) AS amount
    ) assumed
    CROSS JOIN LATERAL (
        SELECT count(*) AS ledger_rows,
               count(*) FILTER (WHERE NOT success) AS failed_rows,
               coalesce(sum(tokens_used) FILTER (WHERE success AND {CONSUMPTION}), 0) AS calculated_used,
               round(coalesce(sum(cost_estimate) FILTER (WHERE success AND {CONSUMPTION}), 0) / 100,
                     {shape.cost_scale}) AS calculated_cost,
               coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_grant'), 0)
                   AS admin_grants,
               coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_deduct'), 0)
                   AS admin_deductions,
               coalesce(bool_or(success AND action_type = 'admin_grant' AND tokens_used = assumed.amount
                                AND NOT {WRITTEN_BY_BOT}),
                        false) AS assumed_grant_logged,
               -- The first-admin-grant fallback takes any grant, the bot's too: whichever row it is,
               -- it is counted exactly once, as the initial grant and not as an extra one.
               (SELECT g.tokens_used FROM token_usage g
                 WHERE g.user_id = p.user_id AND g.action_type = 'admin_grant' AND g.success
                 ORDER BY g.created_at, g.id LIMIT 1) AS first_grant
        FROM token_usage t WHERE t.user_id = p.user_id
    ) l
    WHERE p.user_id = :user_id
    """)


def compute_balance(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    user_id: UUID,
    explicit_initial_grant: int | None = None,
) -> Balance:
    """Compare the profile's cached values with the ledger, choosing the initial grant as DESIGN.md says."""
    row = (
        conn.execute(
            _balance_sql(shape),
            {
                "user_id": user_id,
                "explicit": explicit_initial_grant,
                "tiers": json.dumps(settings.tokens_tier_grants),
            },
        )
        .mappings()
        .one()
    )
    return balance_from_sums(
        row, settings, gross_grants=int(row["admin_grants"]), explicit_initial_grant=explicit_initial_grant
    )


def balance_from_sums(
    row: RowMapping,
    settings: Settings,
    *,
    gross_grants: int,
    explicit_initial_grant: int | None = None,
) -> Balance:
    """The Balance of one user from the ledger sums a query produced; the check and the scan share it."""
    grant = choose_initial_grant(
        explicit=explicit_initial_grant,
        tier=row["tier"],
        first_admin_grant=row["first_grant"],
        assumed_grant_logged=row["assumed_grant_logged"],
        tier_grants=settings.tokens_tier_grants,
    )
    # Never counted twice: an admin_grant row that is the initial grant is not also an extra grant.
    admin_grants = gross_grants - (grant.tokens if grant.logged else 0)
    calculated_used = int(row["calculated_used"])
    admin_deductions = int(row["admin_deductions"])
    return Balance(
        current_used=int(row["current_used"]),
        calculated_used=calculated_used,
        current_cost=Decimal(row["current_cost"]),
        calculated_cost=Decimal(row["calculated_cost"]),
        current_remaining=int(row["current_remaining"]),
        expected_remaining=grant.tokens + admin_grants - calculated_used - admin_deductions,
        initial_grant=grant,
        admin_grants=admin_grants,
        admin_deductions=admin_deductions,
        ledger_rows=int(row["ledger_rows"]),
        failed_rows=int(row["failed_rows"]),
    )


def choose_initial_grant(
    *,
    explicit: int | None,
    tier: Any,
    first_admin_grant: int | None,
    assumed_grant_logged: bool,
    tier_grants: dict[str, int],
) -> InitialGrant:
    """An operator's explicit value wins, then the membership tier, then the first logged admin grant.

    When the explicit or tier amount also appears as a logged admin_grant, that row is taken to be
    the initial grant (the product often logs it), so it is not counted a second time. Grants tokens-bot
    applied itself never count as that row (see WRITTEN_BY_BOT): they are approved extra grants.
    """
    same = "; a logged admin_grant of the same amount is taken to be it"
    if explicit is not None:
        return InitialGrant(
            tokens=explicit,
            source=GrantSource.EXPLICIT,
            logged=assumed_grant_logged,
            description=f"{explicit:,} tokens, as given" + (same if assumed_grant_logged else ""),
        )
    if isinstance(tier, str) and tier in tier_grants:
        amount = tier_grants[tier]
        return InitialGrant(
            tokens=amount,
            source=GrantSource.TIER,
            logged=assumed_grant_logged,
            description=f"{amount:,} tokens for the {tier} membership tier"
            + (same if assumed_grant_logged else ""),
        )
    if first_admin_grant is not None:
        return InitialGrant(
            tokens=int(first_admin_grant),
            source=GrantSource.FIRST_ADMIN_GRANT,
            logged=True,
            description=f"{int(first_admin_grant):,} tokens, the first admin_grant in the ledger",
        )
    return InitialGrant(
        tokens=0,
        source=GrantSource.NONE,
        logged=False,
        description="unknown: no tier and no admin_grant, so 0 was assumed",
    )


def judge(balance: Balance, findings: list[Finding], problem_threshold: int) -> Verdict:
    """A plain verdict: any drift or finding is minor; beyond the threshold, or a negative balance, a problem.

    Cost drift alone stays minor: it is money mis-recorded, not tokens a user gained or lost.
    """
    worst = max(
        abs(balance.used_discrepancy),
        abs(balance.remaining_discrepancy),
        *(f.tokens for f in findings if f.kind is not FindingKind.COST_DRIFT),
    )
    if worst > problem_threshold or balance.current_remaining < 0:
        return Verdict.PROBLEM
    if worst or balance.cost_discrepancy or findings:
        return Verdict.MINOR
    return Verdict.RECONCILED
