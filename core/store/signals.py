"""The ledger signals the findings need, for one user, in one pass: failures, twins, repeated request
ids, prices that no longer match."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.domain.fix_plans import DuplicateRow
from core.settings import ModelPrice, Settings
from core.store.columns import Columns


def _flagged_sql(cols: Columns, *, many: bool) -> str:
    """CTEs ending in `flagged`: the user's (or `:ids` users') usage and grant rows, each marked.

    Usage and grants are looked at apart: a doubled usage row charges the ledger twice, a doubled grant
    (a backfill run twice) credits it twice; either way the ledger is what is wrong. A row the bot has
    reversed, and the reversing row itself, are left out: together they count nothing.

    Both windows sort the user's rows. A partition is the same set of rows whatever the order its keys
    are listed in, so each lists its most telling key first: a sort that compares a flag shared by
    nearly every row first goes on to the next keys on almost every comparison, and reading those out of
    a wide sorted row cost a heavy user most of the statement. The request id is compared bytewise
    (`COLLATE "C"`): the database's default collation is deterministic, so the same ids are equal, and
    the sort need not call the locale's comparison.

    What the sorts carry is kept narrow, since every sorted row is copied twice per window and read column
    by column up to each key. `ops` lists its fixed-width columns first (a text column ahead of a key
    makes every read of that key walk it). The request id is kept as the very expression the window
    partitions by: any other spelling is recomputed after the sorts from the whole metadata document,
    which the sorts then carry. `flagged` is a fence (`OFFSET 0`): flattened into the select list, its
    two marks were worked out again in every aggregate that reads them, four and three times a row.

    The price table is read into numbers once, not per row, as prices per token (per thousand times 0.001,
    exact): a row's price is then two products and a sum, with no division per row.
    """
    t = "t"
    tokens, ok, usage = cols.tokens(t), cols.success(t), cols.is_usage(t)
    inputs, outputs = cols.part_tokens(t, "input_tokens"), cols.part_tokens(t, "output_tokens")
    model = cols.text_of(t, "model_used")
    request_id = cols.meta(t, "request_id")
    users = (
        f"ANY(CAST(:ids AS {cols.ledger.column('user_id').type}[]))"
        if many
        else f"{cols.user_param(cols.ledger)}"
    )
    per_user = "t.user_id, " if many else ""
    reversal = cols.is_reversal(t)
    return f"""
WITH prices AS MATERIALIZED (
    SELECT key AS model, (value->>'input')::numeric * 0.001 AS input, (value->>'output')::numeric * 0.001 AS output
    FROM jsonb_each(:prices)
),
reversed AS (
    SELECT DISTINCT {cols.meta(t, "reverses")} AS row_id
    FROM token_usage t WHERE t.user_id = {users} AND {reversal}
),
ops AS (
    SELECT {tokens} AS tokens_used, {inputs} AS input_tokens, {outputs} AS output_tokens, {ok} AS success,
           {usage} AS usage, {cols.is_grant(t)} AS grant_row, {cols.created(t)} AS created_at, t.id,
           t.user_id, t.id::text AS row_id, {cols.text_of(t, "action_type")} AS action, {model} AS model,
           {cols.cents(t)} AS cost_estimate,
           {request_id} COLLATE "C" AS request_id,
           lag({cols.created(t)}) OVER (
               PARTITION BY {per_user}{tokens}, {inputs}, {outputs}, {ok}, {cols.action(t)}, {model}
               ORDER BY t.created_at NULLS FIRST, t.id) AS previous_twin_at,
           row_number() OVER (
               PARTITION BY {per_user}{request_id} COLLATE "C", {ok}, {usage}
               ORDER BY t.created_at NULLS FIRST, t.id) AS request_rank,
           round({inputs} * pr.input + {outputs} * pr.output, 4) AS priced_cents
    FROM token_usage t
    LEFT JOIN prices pr ON pr.model = {model} AND {usage}
    WHERE t.user_id = {users} AND ({usage} OR {cols.is_grant(t)})
      AND NOT {reversal}
      AND t.id::text NOT IN (SELECT row_id FROM reversed WHERE row_id IS NOT NULL)
),
flagged AS (
    SELECT *,
           success AND (
               -- Infinite times have no distance to subtract: such a row is never a twin by timing.
               coalesce(isfinite(created_at) AND isfinite(previous_twin_at)
                        AND created_at - previous_twin_at <= make_interval(secs => :window), false)
               OR (request_id IS NOT NULL AND request_rank > 1)) AS duplicate,
           success AND priced_cents IS NOT NULL AND cost_estimate IS NOT NULL
               AND abs(cost_estimate - priced_cents) > priced_cents * :tolerance + 0.0001 AS drifted
    FROM ops
    OFFSET 0
)"""


# Each signal the findings read, by name: what one user's (or each user's) marked rows add up to.
_SIGNALS = {
    "consumption_rows": "count(*) FILTER (WHERE usage)",
    "failed_rows": "count(*) FILTER (WHERE usage AND NOT success)",
    "failed_tokens": "coalesce(sum(tokens_used) FILTER (WHERE usage AND NOT success), 0)",
    "duplicate_rows": "count(*) FILTER (WHERE usage AND duplicate)",
    "duplicate_tokens": "coalesce(sum(tokens_used) FILTER (WHERE usage AND duplicate), 0)",
    "duplicate_grant_rows": "count(*) FILTER (WHERE grant_row AND duplicate)",
    "duplicate_grant_tokens": "coalesce(sum(tokens_used) FILTER (WHERE grant_row AND duplicate), 0)",
    "drifted_rows": "count(*) FILTER (WHERE drifted)",
    "drifted_tokens": "coalesce(sum(tokens_used) FILTER (WHERE drifted), 0)",
    "drifted_cents": "coalesce(sum(cost_estimate - priced_cents) FILTER (WHERE drifted), 0)",
}
_SIGNAL_LIST = ",\n       ".join(f"{sql} AS {name}" for name, sql in _SIGNALS.items())
# What a user without usage or grant rows has: nothing of each.
_NO_SIGNALS: dict[str, Any] = dict.fromkeys(_SIGNALS, 0)


@lru_cache
def ledger_signals_sql(cols: Columns) -> TextClause:
    """One pass over a user's rows that counts every signal the findings need; built per shape."""
    return text(f"{_flagged_sql(cols, many=False)}\nSELECT {_SIGNAL_LIST}\nFROM flagged").bindparams(
        bindparam("prices", type_=JSONB)
    )


@lru_cache
def fleet_signals_sql(cols: Columns) -> TextClause:
    """The same signals for the users in `:ids`, one row each (users without such rows get none)."""
    return text(
        f"{_flagged_sql(cols, many=True)}\nSELECT user_id::text AS user_id, {_SIGNAL_LIST}\nFROM flagged GROUP BY user_id"
    ).bindparams(bindparam("prices", type_=JSONB))


@lru_cache
def duplicate_rows_sql(cols: Columns) -> TextClause:
    """The rows the signals count as duplicates, of the users in `:ids`, oldest first: what reversals
    reverse (the same marking as the signals, so a reversal undoes exactly what a finding counted)."""
    return text(
        f"{_flagged_sql(cols, many=True)}\n"
        "SELECT user_id::text AS user_id, row_id, action, model, tokens_used, grant_row, cost_estimate AS cost"
        " FROM flagged WHERE duplicate ORDER BY user_id, created_at NULLS FIRST, row_id"
    ).bindparams(bindparam("prices", type_=JSONB))


def prices_json(prices: dict[str, ModelPrice]) -> dict[str, dict[str, str]]:
    """The price table as JSON with exact decimal strings, so SQL can join it without floats."""
    return {model: {"input": str(p.input), "output": str(p.output)} for model, p in prices.items()}


def _signal_params(settings: Settings) -> dict[str, Any]:
    return {
        "prices": prices_json(settings.tokens_model_prices),
        "window": settings.tokens_duplicate_window_seconds,
        "tolerance": settings.tokens_cost_drift_tolerance,
    }


def read_ledger_signals(conn: Connection, cols: Columns, settings: Settings, user_id: str) -> dict[str, Any]:
    """The signals of `ledger_signals_sql` for one user."""
    return dict(conn.execute(ledger_signals_sql(cols), signals_params(settings, user_id)).mappings().one())


def signals_params(settings: Settings, user_id: str) -> dict[str, Any]:
    """What `ledger_signals_sql` is run with."""
    return {"u": user_id, **_signal_params(settings)}


def read_fleet_signals(
    conn: Connection, cols: Columns, settings: Settings, user_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The signals of many users in one statement, keyed by user id (each as one user's: by signal name);
    users with no rows get zeros."""
    found = {
        row["user_id"]: {name: row[name] for name in _SIGNALS}
        for row in conn.execute(
            fleet_signals_sql(cols), {"ids": user_ids, **_signal_params(settings)}
        ).mappings()
    }
    return {u: found.get(u, _NO_SIGNALS) for u in user_ids}


def read_duplicate_rows(
    conn: Connection, cols: Columns, settings: Settings, user_ids: list[str]
) -> dict[str, list[DuplicateRow]]:
    """Each user's duplicate usage and grant rows, as a reversal must undo them, in one statement."""
    found: dict[str, list[DuplicateRow]] = {u: [] for u in user_ids}
    for row in conn.execute(duplicate_rows_sql(cols), {"ids": user_ids, **_signal_params(settings)}):
        found[row.user_id].append(
            DuplicateRow(
                id=row.row_id,
                action=row.action,
                model=row.model,
                tokens=int(row.tokens_used or 0),
                cost=row.cost,
                grant=bool(row.grant_row),
            )
        )
    return found
