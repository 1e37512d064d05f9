"""Reading a user's ledger rows: the guide's Steps 2 and 3."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Connection, text

from core.models import BreakdownRow, Operation

_BREAKDOWN_SQL = """
SELECT action_type, model_used,
       count(*) AS operations,
       count(*) FILTER (WHERE NOT success) AS failed_operations,
       coalesce(sum(tokens_used) FILTER (WHERE success), 0) AS tokens,
       coalesce(sum(cost_estimate) FILTER (WHERE success), 0) / 100 AS cost,
       min(created_at) AS first_use,
       max(created_at) AS last_use
FROM token_usage
WHERE user_id = :user_id
GROUP BY action_type, model_used
ORDER BY tokens DESC, operations DESC, action_type, model_used
"""
# Parsed once: building a TextClause costs a regex pass over the SQL, on every check otherwise.
_BREAKDOWN = text(_BREAKDOWN_SQL)

_OPERATIONS_SQL = """
SELECT id, created_at, action_type, model_used, tokens_used, cost_estimate, success, error_message
FROM token_usage
WHERE user_id = :user_id
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset
"""
_OPERATIONS = text(_OPERATIONS_SQL)


def usage_breakdown(conn: Connection, user_id: UUID) -> list[BreakdownRow]:
    """Usage by action type and model; admin rows appear too, as the guide's Step 2 shows them."""
    rows = conn.execute(_BREAKDOWN, {"user_id": user_id}).mappings()
    return [BreakdownRow.model_validate(dict(row)) for row in rows]


def recent_operations(conn: Connection, user_id: UUID, *, offset: int, limit: int) -> list[Operation]:
    """A slice of the newest operations, failures and their errors included."""
    rows = conn.execute(_OPERATIONS, {"user_id": user_id, "limit": limit, "offset": offset}).mappings()
    return [Operation.model_validate(dict(row)) for row in rows]
