"""The guide's "Common Scenarios" as findings: each cause of drift the ledger can show, with its tokens."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.columns import Columns
from core.models import Balance, Finding, FindingKind
from core.settings import ModelPrice, Settings


@lru_cache
def ledger_signals_sql(cols: Columns) -> TextClause:
    """One pass over a user's usage rows that counts every signal the findings need; built per shape."""
    t = "t"
    tokens, ok = cols.tokens(t), cols.success(t)
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
           {cols.created(t)} AS created_at,
           {request_id} AS request_id,
           lag({cols.created(t)}) OVER (
               PARTITION BY {ok}, {cols.action(t)}, {model}, {tokens}, {inputs}, {outputs}
               ORDER BY t.created_at NULLS FIRST, t.id) AS previous_twin_at,
           row_number() OVER (
               PARTITION BY {ok}, {request_id} ORDER BY t.created_at NULLS FIRST, t.id) AS request_rank,
           round(({inputs} * pr.input + {outputs} * pr.output) / 1000, 4) AS priced_cents
    FROM token_usage t
    LEFT JOIN prices pr ON pr.model = {model}
    WHERE t.user_id = {cols.user_param(cols.ledger)} AND {cols.is_usage(t)}
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
SELECT count(*) AS consumption_rows,
       count(*) FILTER (WHERE NOT success) AS failed_rows,
       coalesce(sum(tokens_used) FILTER (WHERE NOT success), 0) AS failed_tokens,
       count(*) FILTER (WHERE duplicate) AS duplicate_rows,
       coalesce(sum(tokens_used) FILTER (WHERE duplicate), 0) AS duplicate_tokens,
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
    return dict(
        conn.execute(
            ledger_signals_sql(cols),
            {
                "u": user_id,
                "prices": prices_json(settings.tokens_model_prices),
                "window": settings.tokens_duplicate_window_seconds,
                "tolerance": settings.tokens_cost_drift_tolerance,
            },
        )
        .mappings()
        .one()
    )


def diagnose(balance: Balance, signals: dict[str, Any], tier_grants: dict[str, int]) -> list[Finding]:
    """Turn the balance and ledger signals into findings, largest explanations first."""
    findings = [
        finding
        for finding in (
            _failed_charged(balance, signals),
            _duplicates(signals),
            _unlogged_grant(balance, tier_grants),
            _usage_before_tracking(balance, signals),
            _cost_drift(signals),
            _negative_balance(balance),
        )
        if finding is not None
    ]
    return sorted(findings, key=lambda f: -f.tokens)


def _failed_charged(balance: Balance, signals: dict[str, Any]) -> Finding | None:
    failed_tokens = int(signals["failed_tokens"])
    excess = balance.used_discrepancy
    if failed_tokens <= 0 or excess <= 0:
        return None
    explained = min(failed_tokens, excess)
    fit = "exactly the" if failed_tokens == excess else f"{explained:,} of the {excess:,}"
    return Finding(
        kind=FindingKind.FAILED_CHARGED,
        tokens=explained,
        rows=int(signals["failed_rows"]),
        summary=(
            f"{int(signals['failed_rows']):,} failed operations carry {failed_tokens:,} tokens, which explain"
            f" {fit} tokens the profile counts as used beyond the ledger. Failed operations must not"
            " deduct tokens: grant them back."
        ),
    )


def _duplicates(signals: dict[str, Any]) -> Finding | None:
    rows = int(signals["duplicate_rows"])
    if rows == 0:
        return None
    tokens = int(signals["duplicate_tokens"])
    return Finding(
        kind=FindingKind.DUPLICATES,
        tokens=tokens,
        rows=rows,
        summary=(
            f"{rows:,} likely duplicate entries ({tokens:,} tokens): same action, model and token counts"
            " seconds apart, or a repeated request id. Check whether the user was charged twice."
        ),
    )


def _unlogged_grant(balance: Balance, tier_grants: dict[str, int]) -> Finding | None:
    gap = balance.remaining_discrepancy
    if gap <= 0:
        return None
    for tier, amount in sorted(tier_grants.items(), key=lambda item: -item[1]):
        if amount > 0 and gap % amount == 0 and gap // amount <= 12:
            times = gap // amount
            what = f"the {tier} tier grant" if times == 1 else f"{times} × the {tier} tier grant"
            return Finding(
                kind=FindingKind.UNLOGGED_GRANT,
                tokens=gap,
                summary=(
                    f"The balance is {gap:,} tokens above the ledger, exactly {what} ({amount:,}):"
                    " a grant was given but never logged as admin_grant."
                ),
            )
    return None


def _usage_before_tracking(balance: Balance, signals: dict[str, Any]) -> Finding | None:
    if int(signals["consumption_rows"]) > 0 or balance.current_used <= 0:
        return None
    return Finding(
        kind=FindingKind.USAGE_BEFORE_TRACKING,
        tokens=balance.current_used,
        summary=(
            f"The profile has used {balance.current_used:,} tokens but the ledger has no usage rows:"
            " the usage likely predates token tracking. Set the balance from the membership tier."
        ),
    )


def _cost_drift(signals: dict[str, Any]) -> Finding | None:
    rows = int(signals["drifted_rows"])
    if rows == 0:
        return None
    dollars = (Decimal(signals["drifted_cents"]) / 100).quantize(Decimal("0.01"))
    return Finding(
        kind=FindingKind.COST_DRIFT,
        tokens=int(signals["drifted_tokens"]),
        rows=rows,
        summary=(
            f"{rows:,} operations ({int(signals['drifted_tokens']):,} tokens) were charged a cost that no"
            f" longer matches the model price table, ${dollars:+,} in total."
        ),
    )


def _negative_balance(balance: Balance) -> Finding | None:
    if balance.current_remaining >= 0:
        return None
    return Finding(
        kind=FindingKind.NEGATIVE_BALANCE,
        tokens=-balance.current_remaining,
        summary=(
            f"The balance is negative ({balance.current_remaining:,}); the product should prevent this."
            " Grant tokens to bring it to zero or above."
        ),
    )
