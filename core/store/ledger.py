"""Reading a user's ledger rows: the guide's Steps 2 and 3, every column read as core.store.columns says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, TextClause, text

from core.domain.models import BreakdownRow, LedgerSnapshot, Operation
from core.store.columns import Columns
from core.store.pipeline import Statement


@lru_cache
def _breakdown_sql(cols: Columns) -> TextClause:
    t = "t"
    ok = cols.success(t)
    return text(f"""
    SELECT action_type, model_used,
           count(*) AS operations,
           count(*) FILTER (WHERE NOT ok) AS failed_operations,
           coalesce(sum(tokens) FILTER (WHERE ok), 0) AS tokens,
           coalesce(sum(cents) FILTER (WHERE ok), 0) / 100 AS cost,
           min(shown_at) AS first_use,
           max(shown_at) AS last_use
    FROM (
        SELECT t.action_type::text AS action_type, {cols.text_of(t, "model_used")} AS model_used, {ok} AS ok,
               {cols.tokens(t)} AS tokens, {cols.cents(t)} AS cents, {cols.shown_time(t)} AS shown_at
        FROM token_usage t
        WHERE t.user_id = {cols.user_param(cols.ledger)}
    ) rows
    GROUP BY action_type, model_used
    ORDER BY tokens DESC, operations DESC, action_type NULLS LAST, model_used NULLS LAST
    """)


@lru_cache
def _operations_sql(cols: Columns) -> TextClause:
    """Newest first, undated rows last. Dated and undated rows are read apart, each in the order of the
    index on (user_id, created_at DESC): a heavy user's page reads a page of index entries, not all rows."""
    t = "t"
    # A boolean success is shown as stored (NULL as unknown); any other type as the bot reads it.
    stored = cols.ledger.has("success") and cols.ledger.column("success").base == "boolean"
    success = "t.success" if stored else cols.success(t)
    rows = f"""
        SELECT t.created_at AS sort_at, t.id AS sort_id,
               {cols.row_id(t)} AS id, {cols.shown_time(t)} AS created_at, t.action_type::text AS action_type,
               {cols.text_of(t, "model_used")} AS model_used, {cols.tokens(t)} AS tokens_used,
               {cols.cents(t)} AS cost_estimate, {success} AS success,
               {cols.text_of(t, "error_message")} AS error_message
        FROM token_usage t
        WHERE t.user_id = {cols.user_param(cols.ledger)}"""
    wanted = "LIMIT CAST(:limit AS bigint) + CAST(:offset AS bigint)"
    return text(f"""
    SELECT id, created_at, action_type, model_used, tokens_used, cost_estimate, success, error_message
    FROM (
        ({rows} AND t.created_at IS NOT NULL ORDER BY t.created_at DESC, t.id DESC {wanted})
        UNION ALL
        ({rows} AND t.created_at IS NULL ORDER BY t.id DESC {wanted})
    ) page
    ORDER BY sort_at DESC NULLS LAST, sort_id DESC
    LIMIT :limit OFFSET :offset
    """)


def usage_breakdown(conn: Connection, cols: Columns, user_id: str) -> list[BreakdownRow]:
    """Usage by action type and model; grant and deduction rows appear too, as the guide's Step 2 shows them."""
    sql, params = breakdown_statement(cols, user_id)
    return breakdown_of(conn.execute(sql, params).mappings())


def recent_operations(
    conn: Connection, cols: Columns, user_id: str, *, offset: int, limit: int
) -> list[Operation]:
    """A slice of the newest operations, failures and their errors included; undated rows come last."""
    sql, params = operations_statement(cols, user_id, offset=offset, limit=limit)
    return operations_of(conn.execute(sql, params).mappings())


def breakdown_statement(cols: Columns, user_id: str) -> Statement:
    return Statement(_breakdown_sql(cols), {"u": user_id})


def breakdown_of(rows: Iterable[Mapping[Any, Any]]) -> list[BreakdownRow]:
    return [BreakdownRow.model_validate(dict(row)) for row in rows]


def operations_statement(cols: Columns, user_id: str, *, offset: int, limit: int) -> Statement:
    return Statement(_operations_sql(cols), {"u": user_id, "limit": limit, "offset": offset})


def operations_of(rows: Iterable[Mapping[Any, Any]]) -> list[Operation]:
    return [Operation.model_validate(dict(row)) for row in rows]


def _position(cols: Columns) -> str:
    """A ledger's position, as a select list over its rows `t`: how many, and the latest time shown."""
    return f"count(*) AS rows, max({cols.shown_time('t')}) AS last_at"


def _snapshot(row: Mapping[Any, Any]) -> LedgerSnapshot:
    return LedgerSnapshot(rows=int(row["rows"]), last_at=row["last_at"])


@lru_cache
def _snapshot_sql(cols: Columns) -> TextClause:
    return text(
        f"SELECT {_position(cols)} FROM token_usage t WHERE t.user_id = {cols.user_param(cols.ledger)}"
    )


def ledger_snapshot(conn: Connection, cols: Columns, user_id: str) -> LedgerSnapshot:
    """How far a user's ledger has got: a correction proposed at one snapshot is stale at another."""
    return _snapshot(conn.execute(_snapshot_sql(cols), {"u": user_id}).mappings().one())


def snapshot_of_breakdown(breakdown: Iterable[BreakdownRow]) -> LedgerSnapshot:
    """The ledger position `ledger_snapshot` reads, from the breakdown of the same snapshot.

    The breakdown's groups hold every row of the user, each row once, and its latest use is the latest
    time shown of its rows: their counts add up to the position's rows and the latest of their latest uses
    is its time. A check needs no pass over a heavy user's rows of its own for it.
    """
    rows = list(breakdown)
    return LedgerSnapshot(
        rows=sum(row.operations for row in rows),
        last_at=max((row.last_use for row in rows if row.last_use is not None), default=None),
    )


def ledger_snapshots(conn: Connection, cols: Columns, user_ids: list[str]) -> dict[str, LedgerSnapshot]:
    """`ledger_snapshot` for many users in one statement (users without rows: 0 rows, no time)."""
    ids = f"ANY(CAST(:ids AS {cols.ledger.column('user_id').type}[]))"
    found = {
        row["user_id"]: _snapshot(row)
        for row in conn.execute(
            text(
                f"SELECT t.user_id::text AS user_id, {_position(cols)} FROM token_usage t"
                f" WHERE t.user_id = {ids} GROUP BY t.user_id"
            ),
            {"ids": user_ids},
        ).mappings()
    }
    return {u: found.get(u, LedgerSnapshot(rows=0, last_at=None)) for u in user_ids}
