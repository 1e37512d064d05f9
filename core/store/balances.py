"""The per-user balance query: the guide's Steps 1 and 4 for one user, and the data-quality counts, in
one pass over the user's rows. Built once per product shape and configuration."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, TextClause, text

from core.domain.balance import balance_from_sums
from core.domain.models import Balance
from core.domain.tiers import Tiers
from core.settings import Settings
from core.store.columns import Columns
from core.store.product import ProductShape
from core.store.tiers import load_tiers


def reset_columns(cols: Columns) -> str:
    """What a query keeps of a user's latest reset row (alias `t`): its place in the ledger and its tokens."""
    t = "t"
    return (
        f"t.created_at AS reset_created, t.id AS reset_id, {cols.tokens(t)} AS reset_tokens,"
        f" {cols.shown_time(t)} AS reset_at, t.action_type::text AS reset_action"
    )


# The latest reset row first: by time, a NULL time counting as the oldest, then by id.
RESET_ORDER = "t.created_at DESC NULLS LAST, t.id DESC"


@lru_cache
def balance_sql(cols: Columns) -> TextClause:
    t, p = "t", "p"
    ok, usage, grant, deduct, tokens = (
        cols.success(t),
        cols.is_usage(t),
        cols.is_grant(t),
        cols.is_deduct(t),
        cols.tokens(t),
    )
    after = cols.after_reset(t, "r")
    user = f"t.user_id = {cols.user_param(cols.ledger)}"
    reset = (
        f"LEFT JOIN LATERAL (SELECT {reset_columns(cols)} FROM token_usage t"
        f" WHERE {user} AND {ok} AND {cols.is_reset(t)} ORDER BY {RESET_ORDER} LIMIT 1) r ON true"
        if cols.reset_actions
        else "CROSS JOIN LATERAL (SELECT NULL::numeric AS reset_tokens, NULL::timestamptz AS reset_at,"
        " NULL::text AS reset_action) r"
    )
    return text(f"""
    SELECT {cols.profile_balances(p)},
           r.reset_tokens, r.reset_at, r.reset_action,
           l.*
    FROM {cols.current_profiles("p")}
    CROSS JOIN LATERAL (
        SELECT coalesce(CAST(:explicit AS numeric), CAST(CAST(:tiers AS jsonb) ->> {cols.tier(p)} AS numeric))
            AS amount
    ) assumed
    {reset}
    CROSS JOIN LATERAL (
        SELECT count(*) AS ledger_rows,
               count(*) FILTER (WHERE NOT {ok}) AS failed_rows,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {usage}), 0) AS calculated_used,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {usage} AND {after}), 0) AS counted_used,
               round(coalesce(sum({cols.cents(t)}) FILTER (WHERE {ok} AND {usage}), 0) / {cols.cost_divisor},
                     {cols.shape.cost_scale}) AS calculated_cost,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {grant} AND {after}), 0) AS admin_grants,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {deduct} AND {after}), 0) AS admin_deductions,
               coalesce(bool_or({ok} AND {grant} AND {tokens} = assumed.amount
                                AND NOT {cols.written_by_bot(t)}),
                        false) AS assumed_grant_logged,
               -- The first-grant fallback takes any grant, the bot's too: whichever row it is, it is
               -- counted exactly once, as the initial grant and not as an extra one.
               {cols.tokens_of_key(f"min({cols.history_key(t)}) FILTER (WHERE {ok} AND {grant})")}
                   AS first_grant,
               {_quality_counts(cols)}
        FROM token_usage t WHERE {user}
    ) l
    WHERE p.user_id = {cols.user_param(cols.profiles)}
    """)


def _quality_counts(cols: Columns) -> str:
    """Rows the sums above had to interpret, counted with their tokens (see core.domain.quality)."""
    t = "t"
    tokens = f"coalesce({cols.tokens(t)}, 0)"
    null_cost = f"{cols.cents(t)} IS NULL" if cols.ledger.has("cost_estimate") else "false"
    conditions = {
        "null_tokens": "t.tokens_used IS NULL",
        "null_cost": f"{null_cost} AND {cols.success(t)} AND {cols.is_usage(t)}",
        "null_success": "t.success IS NULL" if cols.ledger.has("success") else "false",
        "null_time": "t.created_at IS NULL",
        "future_time": cols.is_future(t),
        "null_action": "coalesce(btrim(t.action_type::text), '') = ''",
        "near_miss_action": cols.near_miss(t),
        "negative_tokens": f"{tokens} < 0 AND NOT {cols.is_reversal(t)}",
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
    tiers: Tiers,
    user_id: str,
    explicit_initial_grant: int | None = None,
) -> tuple[Balance, RowMapping]:
    """The user's Balance, and the row it came from (it also holds the data-quality counts)."""
    row = (
        conn.execute(balance_sql(cols), balance_params(tiers, user_id, explicit_initial_grant))
        .mappings()
        .one()
    )
    return balance_of(cols, tiers, row, explicit_initial_grant), row


def balance_params(tiers: Tiers, user_id: str, explicit_initial_grant: int | None) -> dict[str, Any]:
    """What `balance_sql` is run with."""
    return {"u": user_id, "explicit": explicit_initial_grant, "tiers": json.dumps(tiers.amounts)}


def balance_of(
    cols: Columns, tiers: Tiers, row: Mapping[Any, Any], explicit_initial_grant: int | None
) -> Balance:
    """The Balance of a `balance_sql` row."""
    return balance_from_sums(
        dict(row),
        tiers,
        cost_unit=cols.cost_unit,
        gross_grants=int(row["admin_grants"]),
        explicit_initial_grant=explicit_initial_grant,
    )


def compute_balance(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    user_id: UUID | str,
    explicit_initial_grant: int | None = None,
) -> Balance:
    """Compare the profile's cached values with the ledger, choosing the initial grant as DESIGN.md says."""
    tiers = load_tiers(conn, shape, settings)
    balance, _ = read_balance(conn, Columns.of(shape, settings), tiers, str(user_id), explicit_initial_grant)
    return balance
