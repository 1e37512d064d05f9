"""Property: the check's balance arithmetic agrees with an independent SQL computation on random ledgers."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from core.services.service import TokensService
from core.settings import Settings
from tests.support.ledger import add_usage, add_user

TIER_GRANTS = {"annual": 5_000_000, "monthly": 600_000}

# The guide's Step 1 and Step 4 written the plain way, with the initial-grant rule spelled out in SQL.
INDEPENDENT_SQL = """
WITH sums AS (
    SELECT
        sum(CASE WHEN success AND action_type <> 'admin_grant' AND action_type <> 'admin_deduct'
                 THEN tokens_used ELSE 0 END) AS used,
        sum(CASE WHEN success AND action_type <> 'admin_grant' AND action_type <> 'admin_deduct'
                 THEN cost_estimate ELSE 0 END) AS cents,
        sum(CASE WHEN success AND action_type = 'admin_grant' THEN tokens_used ELSE 0 END) AS grants,
        sum(CASE WHEN success AND action_type = 'admin_deduct' THEN tokens_used ELSE 0 END) AS deducts
    FROM token_usage WHERE user_id = :u
),
first_grant AS (
    SELECT tokens_used FROM token_usage
    WHERE user_id = :u AND success AND action_type = 'admin_grant'
    ORDER BY created_at, id LIMIT 1
),
initial AS (
    SELECT CASE
        WHEN CAST(:explicit AS bigint) IS NOT NULL THEN CAST(:explicit AS bigint)
        WHEN p.membership_tier IS NOT NULL AND CAST(:tiers AS jsonb) ? p.membership_tier
            THEN (CAST(:tiers AS jsonb) ->> p.membership_tier)::bigint
        ELSE coalesce((SELECT tokens_used FROM first_grant), 0)
    END AS amount,
    CAST(:explicit AS bigint) IS NOT NULL
        OR (p.membership_tier IS NOT NULL AND CAST(:tiers AS jsonb) ? p.membership_tier) AS assumed
    FROM user_profiles p WHERE p.user_id = :u
)
SELECT coalesce(s.used, 0) AS used,
       round(coalesce(s.cents, 0) / 100, 2) AS cost,
       i.amount AS initial,
       -- The first admin_grant, when it is the initial grant, is not also an extra grant; an assumed
       -- (explicit or tier) amount is taken out once when the product logged a grant of it. A grant
       -- tokens-bot approved (source slack, with its request id) is never that logged grant.
       coalesce(s.grants, 0) - CASE
           WHEN NOT i.assumed THEN coalesce((SELECT tokens_used FROM first_grant), 0)
           WHEN EXISTS (
               SELECT 1 FROM token_usage WHERE user_id = :u AND success AND action_type = 'admin_grant'
                 AND tokens_used = i.amount
                 AND NOT (metadata ->> 'source' = 'slack' AND metadata ? 'request_id')) THEN i.amount
           ELSE 0 END AS extra_grants,
       coalesce(s.deducts, 0) AS deducts
FROM sums s, initial i
"""

rows = st.lists(
    st.tuples(
        st.sampled_from(["chat_conversation", "image_generation", "admin_grant", "admin_deduct"]),
        # Tier amounts drawn often enough to meet the initial-grant rule, logged or approved.
        st.one_of(st.integers(min_value=0, max_value=700_000), st.sampled_from([600_000, 5_000_000])),
        st.booleans(),
        st.decimals(min_value=0, max_value=500, places=4, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=100_000),
        st.booleans(),  # written by tokens-bot on approval, with its metadata
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ledger=rows,
    tier=st.sampled_from([None, "annual", "monthly", "lifetime"]),
    explicit=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000_000), st.just(600_000)),
    current_remaining=st.integers(min_value=-1_000_000, max_value=10_000_000),
    current_used=st.integers(min_value=0, max_value=10_000_000),
    current_cost=st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False),
)
def test_balance_matches_an_independent_sql_computation(
    settings: Settings,
    engine: Engine,
    ledger: list[tuple[str, int, bool, Decimal, int, bool]],
    tier: str | None,
    explicit: int | None,
    current_remaining: int,
    current_used: int,
    current_cost: Decimal,
) -> None:
    """Used, cost, expected remaining and every discrepancy equal the plain formula, whatever the ledger."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=current_remaining, used=current_used, cost=current_cost, tier=tier)
        for number, (action, tokens, success, cents, seconds, by_bot) in enumerate(ledger):
            add_usage(
                conn,
                user,
                action=action,
                tokens=tokens,
                success=success,
                cost_cents=cents,
                seconds=seconds,
                metadata={"source": "slack", "request_id": number} if by_bot else None,
            )
        truth = (
            conn.execute(
                text(INDEPENDENT_SQL), {"u": user, "explicit": explicit, "tiers": json.dumps(TIER_GRANTS)}
            )
            .mappings()
            .one()
        )
    balance = TokensService(settings, engine).check("UADMIN1", user, initial_grant=explicit).balance
    expected = truth["initial"] + truth["extra_grants"] - truth["used"] - truth["deducts"]
    assert balance.calculated_used == truth["used"]
    assert balance.calculated_cost == truth["cost"]
    assert balance.initial_grant.tokens == truth["initial"]
    assert balance.expected_remaining == expected
    assert balance.used_discrepancy == current_used - truth["used"]
    assert balance.remaining_discrepancy == current_remaining - expected
    assert balance.cost_discrepancy == current_cost - truth["cost"]
