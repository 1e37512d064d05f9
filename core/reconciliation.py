"""The balance arithmetic of the guide's Steps 1 and 4, computed by the database for one user."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, TextClause, text

from core.columns import Columns
from core.models import Balance, Finding, FindingKind, GrantSource, InitialGrant, Verdict
from core.product import ProductShape
from core.settings import Settings


@lru_cache
def _balance_sql(cols: Columns) -> TextClause:
    """Built and parsed once per product shape: the balance sums and the data-quality counts, one pass."""
    t, p = "t", "p"
    ok, usage, grant, deduct, tokens = (
        cols.success(t),
        cols.is_usage(t),
        cols.is_grant(t),
        cols.is_deduct(t),
        cols.tokens(t),
    )
    null_cost = f"{cols.cents(t)} IS NULL" if cols.ledger.has("cost_estimate") else "false"
    null_success = "t.success IS NULL" if cols.ledger.has("success") else "false"
    return text(f"""
    SELECT {cols.profile_balances(p)},
           l.*
    FROM user_profiles p
    CROSS JOIN LATERAL (
        SELECT coalesce(CAST(:explicit AS numeric), CAST(CAST(:tiers AS jsonb) ->> {cols.tier(p)} AS numeric))
            AS amount
    ) assumed
    CROSS JOIN LATERAL (
        SELECT count(*) AS ledger_rows,
               count(*) FILTER (WHERE NOT {ok}) AS failed_rows,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {usage}), 0) AS calculated_used,
               round(coalesce(sum({cols.cents(t)}) FILTER (WHERE {ok} AND {usage}), 0) / 100,
                     {cols.shape.cost_scale}) AS calculated_cost,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {grant}), 0) AS admin_grants,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {deduct}), 0) AS admin_deductions,
               coalesce(bool_or({ok} AND {grant} AND {tokens} = assumed.amount
                                AND NOT {cols.written_by_bot(t)}),
                        false) AS assumed_grant_logged,
               -- The first-grant fallback takes any grant, the bot's too: whichever row it is, it is
               -- counted exactly once, as the initial grant and not as an extra one.
               {cols.tokens_of_key(f"min({cols.history_key(t)}) FILTER (WHERE {ok} AND {grant})")}
                   AS first_grant,
               {_quality_counts(cols, null_cost=null_cost, null_success=null_success)}
        FROM token_usage t WHERE t.user_id = {cols.user_param(cols.ledger)}
    ) l
    WHERE p.user_id = {cols.user_param(cols.profiles)}
    """)


def _quality_counts(cols: Columns, *, null_cost: str, null_success: str) -> str:
    """Rows the sums above had to interpret, counted with their tokens (see core.quality)."""
    t = "t"
    tokens = f"coalesce({cols.tokens(t)}, 0)"
    conditions = {
        "null_tokens": "t.tokens_used IS NULL",
        "null_cost": f"{null_cost} AND {cols.success(t)} AND {cols.is_usage(t)}",
        "null_success": null_success,
        "null_time": "t.created_at IS NULL",
        "future_time": cols.is_future(t),
        "null_action": "coalesce(btrim(t.action_type::text), '') = ''",
        "near_miss_action": cols.near_miss(t),
        "negative_tokens": f"{tokens} < 0",
        "odd_metadata": cols.metadata_is_odd(t),
    }
    return ",\n               ".join(
        f"count(*) FILTER (WHERE {where}) AS {name}_rows,"
        f" coalesce(sum({tokens}) FILTER (WHERE {where}), 0) AS {name}_tokens"
        for name, where in conditions.items()
    )


def read_balance(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    user_id: str,
    explicit_initial_grant: int | None = None,
) -> tuple[Balance, RowMapping]:
    """The user's Balance, and the row it came from (it also holds the data-quality counts)."""
    row = (
        conn.execute(
            _balance_sql(cols),
            {
                "u": user_id,
                "explicit": explicit_initial_grant,
                "tiers": json.dumps(settings.tokens_tier_grants),
            },
        )
        .mappings()
        .one()
    )
    balance = balance_from_sums(
        row, settings, gross_grants=int(row["admin_grants"]), explicit_initial_grant=explicit_initial_grant
    )
    return balance, row


def compute_balance(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    user_id: UUID | str,
    explicit_initial_grant: int | None = None,
) -> Balance:
    """Compare the profile's cached values with the ledger, choosing the initial grant as DESIGN.md says."""
    balance, _ = read_balance(
        conn, Columns.of(shape, settings), settings, str(user_id), explicit_initial_grant
    )
    return balance


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
    unset = tuple(name for name in ("remaining", "used", "cost") if row[f"{name}_unset"])
    return Balance(
        unset=unset,
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
