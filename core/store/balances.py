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
    """The profile's values, the latest reset and the user's ledger sums, in one pass over their rows.

    The rows are summed per action type first (`g`), then the types are told apart: whether a type is
    usage, a grant, a deduction, blank or a near miss is decided once per type rather than once per row
    (a case- and space-folded comparison of every row's type was half of a heavy user's pass). Counts
    and sums add up exactly across the types (integers and numeric), so every figure is the one a
    single pass over the rows gives.
    """
    t, g, p = "t", "g", "p"
    ok, tokens = cols.success(t), cols.tokens(t)
    usage, grant, deduct = cols.is_usage(g), cols.is_grant(g), cols.is_deduct(g)
    after = cols.after_reset(t, "r")
    user = f"t.user_id = {cols.user_param(cols.ledger)}"
    reset = (
        f"LEFT JOIN LATERAL (SELECT {reset_columns(cols)} FROM token_usage t"
        f" WHERE {user} AND {ok} AND {cols.is_reset(t)} ORDER BY {RESET_ORDER} LIMIT 1) r ON true"
        if cols.reset_actions
        else "CROSS JOIN LATERAL (SELECT NULL::numeric AS reset_tokens, NULL::timestamptz AS reset_at,"
        " NULL::text AS reset_action) r"
    )
    inner_quality, outer_quality = _quality_counts(cols)
    return text(f"""
    SELECT {cols.profile_balances(p)},
           r.reset_tokens, r.reset_at, r.reset_action,
           l.*
    FROM {cols.current_profiles("p")}
    CROSS JOIN LATERAL (
        -- Fenced (OFFSET 0), so the amount is worked out once: pulled up into the pass below, a generic
        -- plan parsed the tiers' JSON again for every row (3 ms of a heavy user's 11).
        SELECT coalesce(CAST(:explicit AS numeric), CAST(CAST(:tiers AS jsonb) ->> {cols.tier(p)} AS numeric))
            AS amount
        OFFSET 0
    ) assumed
    {reset}
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(g.rows), 0)::bigint AS ledger_rows,
               coalesce(sum(g.failed_rows), 0)::bigint AS failed_rows,
               coalesce(sum(g.used) FILTER (WHERE {usage}), 0) AS calculated_used,
               coalesce(sum(g.used_after) FILTER (WHERE {usage}), 0) AS counted_used,
               round(coalesce(sum(g.cents) FILTER (WHERE {usage}), 0) / {cols.cost_divisor},
                     {cols.shape.cost_scale}) AS calculated_cost,
               coalesce(sum(g.used_after) FILTER (WHERE {grant}), 0) AS admin_grants,
               coalesce(sum(g.used_after) FILTER (WHERE {deduct}), 0) AS admin_deductions,
               coalesce(bool_or(g.assumed_logged) FILTER (WHERE {grant}), false) AS assumed_grant_logged,
               -- The first-grant fallback takes any grant, the bot's too: whichever row it is, it is
               -- counted exactly once, as the initial grant and not as an extra one.
               {cols.tokens_of_key('min(g.first_key COLLATE "C")')} AS first_grant,
               {outer_quality}
        FROM (
            SELECT {cols.action(t)} AS action_type,
                   count(*) AS rows,
                   count(*) FILTER (WHERE NOT {ok}) AS failed_rows,
                   sum({tokens}) FILTER (WHERE {ok}) AS used,
                   sum({tokens}) FILTER (WHERE {ok} AND {after}) AS used_after,
                   sum({cols.cents(t)}) FILTER (WHERE {ok}) AS cents,
                   bool_or({ok} AND {tokens} = assumed.amount AND NOT {cols.written_by_bot(t)}) AS assumed_logged,
                   -- A key is built only for grant rows: building one for every row would cost more than
                   -- the type test saves.
                   min({cols.history_key(t)}) FILTER (WHERE {ok} AND {cols.is_grant(t)}) AS first_key,
                   {inner_quality}
            FROM token_usage t WHERE {user}
            GROUP BY 1
        ) g
    ) l
    WHERE p.user_id = {cols.user_param(cols.profiles)}
    """)


def _quality_counts(cols: Columns) -> tuple[str, str]:
    """Rows the sums above had to interpret, counted with their tokens (see core.domain.quality): the
    select lists of the per-type pass and of the pass over the types.

    A condition on the row is counted per type and the counts added up; one on the type alone (blank,
    a near miss) takes every row of the types it holds for, and the usage condition of a NULL cost is
    applied to the type's count of NULL-cost successful rows.
    """
    t, g = "t", "g"
    tokens = f"coalesce({cols.tokens(t)}, 0)"
    null_cost = f"{cols.cents(t)} IS NULL" if cols.ledger.has("cost_estimate") else "false"
    per_row = {
        "null_tokens": "t.tokens_used IS NULL",
        "null_cost": f"{null_cost} AND {cols.success(t)}",
        "null_success": "t.success IS NULL" if cols.ledger.has("success") else "false",
        "null_time": "t.created_at IS NULL",
        "future_time": cols.is_future(t),
        "negative_tokens": f"{tokens} < 0 AND NOT {cols.is_reversal(t)}",
        "odd_metadata": cols.metadata_is_odd(t),
    }
    inner = [f"sum({tokens}) AS all_tokens"] + [
        f"count(*) FILTER (WHERE {where}) AS {name}_rows, sum({tokens}) FILTER (WHERE {where}) AS {name}_tokens"
        for name, where in per_row.items()
    ]
    per_type = {
        "null_action": ("rows", "all_tokens", f"coalesce(btrim({cols.action(g)}), '') = ''"),
        "near_miss_action": ("rows", "all_tokens", cols.near_miss(g)),
        "null_cost": ("null_cost_rows", "null_cost_tokens", cols.is_usage(g)),
    }
    outer = [
        f"coalesce(sum(g.{rows}) FILTER (WHERE {where}), 0)::bigint AS {name}_rows,"
        f" coalesce(sum(g.{sums}) FILTER (WHERE {where}), 0) AS {name}_tokens"
        for name, (rows, sums, where) in per_type.items()
    ] + [
        f"coalesce(sum(g.{name}_rows), 0)::bigint AS {name}_rows, coalesce(sum(g.{name}_tokens), 0) AS {name}_tokens"
        for name in per_row
        if name not in per_type
    ]
    return ",\n                   ".join(inner), ",\n               ".join(outer)


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
