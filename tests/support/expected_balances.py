"""The numbers every user should have, computed independently of the bot from README's stated meanings.

Nothing here imports core.store.columns or reuses the bot's SQL: it is the guide's Steps 1 and 4 written the
plain way over the stored rows, with each odd value read as README "Your product's schema" says:
NULL tokens 0, NULL cost 0, NULL success a success, action types trimmed and lower-cased, text
metadata parsed (invalid or non-object is none), timestamps without time zone (and dates) as UTC,
action types matched exactly (a near miss such as ' Admin_Grant' is usage), NULL profile
balances 0, fractions of a token rounded per row, floats converted per row to numeric.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from core.domain.errors import TokensBotError
from tests.support.product_variants import Variant

TIER_GRANTS = {"annual": 5_000_000, "monthly": 600_000}


@dataclass(frozen=True)
class Expected:
    user_id: str
    email: str | None
    tier: str | None
    unset: tuple[str, ...]
    current_remaining: int
    current_used: int
    current_cost: Decimal
    calculated_used: int
    calculated_cost: Decimal
    initial_grant: int
    admin_grants: int
    admin_deductions: int
    recent_tokens: int

    @property
    def expected_remaining(self) -> int:
        return self.initial_grant + self.admin_grants - self.calculated_used - self.admin_deductions

    @property
    def used_discrepancy(self) -> int:
        return self.current_used - self.calculated_used

    @property
    def remaining_discrepancy(self) -> int:
        return self.current_remaining - self.expected_remaining

    @property
    def cost_discrepancy(self) -> Decimal:
        return self.current_cost - self.calculated_cost

    @property
    def worst(self) -> int:
        return max(abs(self.used_discrepancy), abs(self.remaining_discrepancy))

    def listed(self, minimum: int) -> bool:
        """In the discrepancy scan: over the minimum even after allowing for rows inside the grace window."""
        return self.worst > minimum and self.worst - self.recent_tokens > minimum


def _sql(v: Variant) -> str:
    created = {
        "timestamptz": "t.created_at",
        "timestamp": "(t.created_at AT TIME ZONE 'UTC')",
        "date": "(t.created_at::timestamp AT TIME ZONE 'UTC')",
    }[v.created_type]
    document = {
        "jsonb": "t.metadata",
        "json": "t.metadata::jsonb",
        "text": "expect.try_jsonb(t.metadata)",
    }[v.metadata_type]
    order = "t.id" if v.id_type == "identity" else 't.id::text COLLATE "C"'
    return f"""
    WITH raw AS (
        SELECT t.user_id::text AS uid,
               round(t.tokens_used::numeric) AS tok,
               coalesce(t.cost_estimate::numeric, 0) AS cents,
               coalesce(t.success, true) AS ok,
               t.action_type::text AS act,
               {created} AS at,
               {order} AS ord,
               {document} AS doc
        FROM token_usage t
    ),
    rows AS (
        SELECT r.*,
               coalesce(r.act = 'admin_grant', false) AS is_grant,
               coalesce(r.act = 'admin_deduct', false) AS is_deduct,
               coalesce(jsonb_typeof(r.doc) = 'object' AND r.doc ->> 'source' = 'slack'
                        AND r.doc ->> 'request_id' IS NOT NULL, false) AS by_bot
        FROM raw r
    ),
    sums AS (
        SELECT uid,
               sum(tok) FILTER (WHERE ok AND NOT is_grant AND NOT is_deduct) AS used,
               sum(cents) FILTER (WHERE ok AND NOT is_grant AND NOT is_deduct) AS cents,
               sum(tok) FILTER (WHERE ok AND is_grant) AS grants,
               sum(tok) FILTER (WHERE ok AND is_deduct) AS deducts,
               sum(tok) FILTER (WHERE at >= now() - make_interval(secs => :grace) AND at <= now()) AS recent
        FROM rows GROUP BY uid
    ),
    profiles AS (
        SELECT p.user_id::text AS uid, p.membership_tier::text AS tier,
               p.vibe_assistant_tokens_remaining IS NULL AS remaining_unset,
               p.vibe_assistant_tokens_used IS NULL AS used_unset,
               p.vibe_assistant_total_cost IS NULL AS cost_unset,
               coalesce(round(p.vibe_assistant_tokens_remaining::numeric), 0) AS cur_remaining,
               coalesce(round(p.vibe_assistant_tokens_used::numeric), 0) AS cur_used,
               coalesce(p.vibe_assistant_total_cost::numeric, 0) AS cur_cost
        FROM user_profiles p
    )
    SELECT p.*, s.used, s.grants, s.deducts, s.recent,
           round(coalesce(s.cents, 0) / 100, {v.cost_scale}) AS calc_cost,
           (CAST(:tiers AS jsonb) ->> p.tier)::numeric AS tier_amount,
           (SELECT min(u.email) FROM auth.users u WHERE u.id::text = p.uid) AS email,
           first.tok AS first_grant, first.found AS has_grant,
           EXISTS (SELECT 1 FROM rows r WHERE r.uid = p.uid AND r.ok AND r.is_grant AND NOT r.by_bot
                   AND r.tok = (CAST(:tiers AS jsonb) ->> p.tier)::numeric) AS tier_logged
    FROM profiles p
    LEFT JOIN sums s ON s.uid = p.uid
    LEFT JOIN LATERAL (
        SELECT coalesce(r.tok, 0) AS tok, true AS found FROM rows r
        WHERE r.uid = p.uid AND r.ok AND r.is_grant
        ORDER BY r.at NULLS FIRST, r.ord LIMIT 1
    ) first ON true
    """


def expected_balances(conn: Connection, v: Variant, *, grace_seconds: int = 60) -> dict[str, Expected]:
    """Every profile's expected numbers, keyed by user id as text."""
    found: dict[str, Expected] = {}
    params = {"tiers": json.dumps(TIER_GRANTS), "grace": grace_seconds}
    for r in conn.execute(text(_sql(v)), params).mappings():
        found[r["uid"]] = _expected(r)
    return found


def _expected(r: Any) -> Expected:
    grants = int(r["grants"] or 0)
    if r["tier_amount"] is not None:
        initial = int(r["tier_amount"])
        extra = grants - (initial if r["tier_logged"] else 0)
    elif r["has_grant"]:
        initial = int(r["first_grant"])
        extra = grants - initial
    else:
        initial, extra = 0, grants
    return Expected(
        user_id=r["uid"],
        email=r["email"],
        tier=r["tier"],
        unset=tuple(n for n in ("remaining", "used", "cost") if r[f"{n}_unset"]),
        current_remaining=int(r["cur_remaining"]),
        current_used=int(r["cur_used"]),
        current_cost=Decimal(r["cur_cost"]),
        calculated_used=int(r["used"] or 0),
        calculated_cost=Decimal(r["calc_cost"]),
        initial_grant=initial,
        admin_grants=extra,
        admin_deductions=int(r["deducts"] or 0),
        recent_tokens=int(r["recent"] or 0),
    )


def assert_balance_matches(balance: Any, want: Expected, label: str) -> None:
    """A core Balance (from the check or the scan) against the independent numbers, every field named."""
    got = {
        "current_used": balance.current_used,
        "current_remaining": balance.current_remaining,
        "current_cost": balance.current_cost,
        "calculated_used": balance.calculated_used,
        "calculated_cost": balance.calculated_cost,
        "initial_grant": balance.initial_grant.tokens,
        "admin_grants": balance.admin_grants,
        "admin_deductions": balance.admin_deductions,
        "expected_remaining": balance.expected_remaining,
        "used_discrepancy": balance.used_discrepancy,
        "remaining_discrepancy": balance.remaining_discrepancy,
        "cost_discrepancy": balance.cost_discrepancy,
        "unset": tuple(balance.unset),
    }
    wanted = {name: getattr(want, name) for name in got}
    wrong = {k: (got[k], wanted[k]) for k in got if got[k] != wanted[k]}
    assert not wrong, f"{label}: (bot, expected) differ: {wrong}"


class Problems(list[str]):
    """Every disagreement of a scenario, collected so one report names them all instead of the first."""

    @contextmanager
    def section(self, label: str) -> Iterator[None]:
        try:
            yield
        except (AssertionError, TokensBotError) as exc:
            self.append(f"{label}: {type(exc).__name__}: {str(exc)[:600]}")

    def assert_none(self) -> None:
        assert not self, f"{len(self)} problem(s):\n" + "\n".join(self)
