"""The ledger signals the findings need, for one user, in one pass: failures, twins, repeated request
ids, prices that no longer match."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.settings import ModelPrice, Settings
from core.store.columns import Columns


@lru_cache
def ledger_signals_sql(cols: Columns) -> TextClause:
    """One pass over a user's rows that counts every signal the findings need; built per shape.

    Usage and grants are looked at apart: a doubled usage row charges the ledger twice, a doubled grant
    (a backfill run twice) credits it twice; either way the ledger is what is wrong.
    """
    t = "t"
    tokens, ok, usage = cols.tokens(t), cols.success(t), cols.is_usage(t)
    inputs, outputs = cols.part_tokens(t, "input_tokens"), cols.part_tokens(t, "output_tokens")
    model = cols.text_of(t, "model_used")
    request_id = cols.meta(t, "request_id")
    return text(f"""
WITH prices AS (
    SELECT key AS model, (value->>'input')::numeric AS input, (value->>'output')::numeric AS output
    FROM jsonb_each(:prices)
),
ops AS (
    SELECT {tokens} AS tokens_used, {ok} AS success, {cols.cents(t)} AS cost_estimate,
           {usage} AS usage, {cols.is_grant(t)} AS grant_row,
           {cols.created(t)} AS created_at,
           {request_id} AS request_id,
           lag({cols.created(t)}) OVER (
               PARTITION BY {ok}, {cols.action(t)}, {model}, {tokens}, {inputs}, {outputs}
               ORDER BY t.created_at NULLS FIRST, t.id) AS previous_twin_at,
           row_number() OVER (
               PARTITION BY {ok}, {usage}, {request_id} ORDER BY t.created_at NULLS FIRST, t.id)
               AS request_rank,
           round(({inputs} * pr.input + {outputs} * pr.output) / 1000, 4) AS priced_cents
    FROM token_usage t
    LEFT JOIN prices pr ON pr.model = {model} AND {usage}
    WHERE t.user_id = {cols.user_param(cols.ledger)} AND ({usage} OR {cols.is_grant(t)})
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
)
SELECT count(*) FILTER (WHERE usage) AS consumption_rows,
       count(*) FILTER (WHERE usage AND NOT success) AS failed_rows,
       coalesce(sum(tokens_used) FILTER (WHERE usage AND NOT success), 0) AS failed_tokens,
       count(*) FILTER (WHERE usage AND duplicate) AS duplicate_rows,
       coalesce(sum(tokens_used) FILTER (WHERE usage AND duplicate), 0) AS duplicate_tokens,
       count(*) FILTER (WHERE grant_row AND duplicate) AS duplicate_grant_rows,
       coalesce(sum(tokens_used) FILTER (WHERE grant_row AND duplicate), 0) AS duplicate_grant_tokens,
       count(*) FILTER (WHERE drifted) AS drifted_rows,
       coalesce(sum(tokens_used) FILTER (WHERE drifted), 0) AS drifted_tokens,
       coalesce(sum(cost_estimate - priced_cents) FILTER (WHERE drifted), 0) AS drifted_cents
FROM flagged
""").bindparams(bindparam("prices", type_=JSONB))


def prices_json(prices: dict[str, ModelPrice]) -> dict[str, dict[str, str]]:
    """The price table as JSON with exact decimal strings, so SQL can join it without floats."""
    return {model: {"input": str(p.input), "output": str(p.output)} for model, p in prices.items()}


def read_ledger_signals(conn: Connection, cols: Columns, settings: Settings, user_id: str) -> dict[str, Any]:
    """The signals of `ledger_signals_sql` for one user."""
    return dict(conn.execute(ledger_signals_sql(cols), signals_params(settings, user_id)).mappings().one())


def signals_params(settings: Settings, user_id: str) -> dict[str, Any]:
    """What `ledger_signals_sql` is run with."""
    return {
        "u": user_id,
        "prices": prices_json(settings.tokens_model_prices),
        "window": settings.tokens_duplicate_window_seconds,
        "tolerance": settings.tokens_cost_drift_tolerance,
    }
