"""Daily buckets of the ledger for the pictures: one user's days (`usage_series`), the fleet's (`fleet_consumption`).

The buckets are computed by PostgreSQL (generate_series of UTC days LEFT JOIN the rows aggregated per day),
so a whale's 20,000 rows never travel to Python: the answer is one row per day. Every row is read as
core.store.columns reads it for the check, so an odd row means the same thing in a picture as in the
check: a NULL success is a success, a NULL action type is usage, NULL tokens are 0. A row with no
`created_at`, or dated after today, has no day in the window and is left out of the buckets (it still
counts in the balance the remaining line ends at).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Literal, NamedTuple

from sqlalchemy import Connection, TextClause, text

from core.domain.charts import UsageDay
from core.store.columns import Columns

SERIES_SHOWN = 5
"""Series drawn apart; the rest are summed as OTHER, so the picture stays readable."""
OTHER = "other"
NONE = "(none)"
"""The label of rows whose action type or model is NULL."""

# Days are generated as `timestamp` (not timestamptz), so the session's time zone never shifts them.
# The window: the :days UTC calendar days ending today, today being the snapshot's now() in UTC.
_TODAY = "(now() AT TIME ZONE 'UTC')::date"
_FIRST_DAY = f"({_TODAY} - (CAST(:days AS integer) - 1))"


def _utc_day(expr: str) -> str:
    """The UTC calendar day of a timestamptz, whatever the session's time zone."""
    return f"(({expr}) AT TIME ZONE 'UTC')::date"


def _from_day(day: str) -> str:
    """The first instant of a UTC day, as timestamptz: a bound an index on created_at can use."""
    return f"(({day})::timestamp AT TIME ZONE 'UTC')"


class UsageSeries(NamedTuple):
    """What `usage_series` found: how the usage was grouped, the series in stacking order, and the days."""

    grouped_by: Literal["action", "model"]
    series: list[str]
    days: list[UsageDay]


@lru_cache
def _series_sql(cols: Columns) -> TextClause:
    """One statement, one index range scan on token_usage (user_id, created_at) for the window.

    The grouping is chosen in SQL too: by action type or by model, whichever has fewer distinct values
    among the window's successful usage rows (action type on a tie), so the stack has as few colours as
    the data allows. The top SERIES_SHOWN labels by tokens are kept (ties by label, in code-point order), the rest summed as
    OTHER; a product label that is itself spelled "other" would share OTHER's series.
    """
    t = "t"
    created = cols.created(t)
    return text(f"""
    WITH w AS MATERIALIZED (
        SELECT {_utc_day(created)} AS day,
               {cols.success(t)} AS ok,
               {cols.is_usage(t)} AS usage,
               ({cols.is_grant(t)} OR {cols.is_reset(t)}) AS adds,
               {cols.is_deduct(t)} AS takes,
               coalesce({cols.tokens(t)}, 0) AS tokens,
               coalesce({cols.action(t)}, '{NONE}') AS action,
               coalesce({cols.text_of(t, "model_used")}, '{NONE}') AS model
        FROM token_usage t
        WHERE t.user_id = {cols.user_param(cols.ledger)}
          AND {created} >= {_from_day(_FIRST_DAY)}
          AND {created} < {_from_day(f"{_TODAY} + 1")}
    ),
    choice AS (
        SELECT count(DISTINCT action) FILTER (WHERE ok AND usage)
               <= count(DISTINCT model) FILTER (WHERE ok AND usage) AS by_action
        FROM w
    ),
    labelled AS (
        SELECT w.day, w.tokens, CASE WHEN c.by_action THEN w.action ELSE w.model END AS label
        FROM w CROSS JOIN choice c
        WHERE w.ok AND w.usage
    ),
    kept AS (
        SELECT label,
               CASE WHEN place <= {SERIES_SHOWN} THEN label ELSE '{OTHER}' END AS series,
               least(place, {SERIES_SHOWN + 1}) AS place
        FROM (SELECT label, row_number() OVER (ORDER BY sum(tokens) DESC, label COLLATE "C") AS place
              FROM labelled GROUP BY label) ranked
    ),
    used AS (
        SELECT day, jsonb_object_agg(series, tokens::text) AS used
        FROM (SELECT l.day, k.series, sum(l.tokens) AS tokens
              FROM labelled l JOIN kept k USING (label) GROUP BY l.day, k.series) per_series
        GROUP BY day
    ),
    daily AS (
        SELECT day,
               coalesce(sum(tokens) FILTER (WHERE ok AND usage), 0) AS used_total,
               coalesce(sum(tokens) FILTER (WHERE NOT ok AND usage), 0) AS failed,
               coalesce(sum(tokens) FILTER (WHERE ok AND adds), 0) AS granted,
               coalesce(sum(tokens) FILTER (WHERE ok AND takes), 0) AS deducted
        FROM w GROUP BY day
    )
    SELECT g.day,
           coalesce(u.used, '{{}}'::jsonb) AS used,
           coalesce(x.failed, 0)::text AS failed,
           coalesce(x.granted, 0)::text AS granted,
           coalesce(x.deducted, 0)::text AS deducted,
           (CAST(:expected AS numeric) - coalesce(sum(coalesce(x.granted - x.used_total - x.deducted, 0))
               OVER (ORDER BY g.day ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0))::text AS remaining,
           (SELECT by_action FROM choice) AS by_action,
           (SELECT coalesce(array_agg(series ORDER BY place, series), '{{}}')
            FROM (SELECT series, max(place) AS place FROM kept GROUP BY series) s) AS series
    FROM (SELECT d::date AS day
          FROM generate_series({_FIRST_DAY}::timestamp, {_TODAY}::timestamp, interval '1 day') AS d) g
    LEFT JOIN daily x ON x.day = g.day
    LEFT JOIN used u ON u.day = g.day
    ORDER BY g.day
    """)


def usage_series(
    conn: Connection, cols: Columns, user_id: str, days: int, expected_remaining: int
) -> UsageSeries:
    """The user's last `days` UTC days: usage per series, failed, granted, deducted, and the remaining line.

    The remaining line walks back from the ledger's balance: a day ends at `expected_remaining` minus the
    net change (granted - used - deducted) of the days after it, so its last point (today) is the
    balance the check computes. A reset *sets* the balance, which a walk back cannot undo without the
    balance it replaced, so its tokens are counted as added: before the latest reset the line is an
    approximation (its shape is right, its level may not be). Rows dated after today are outside every
    day, so their effect shows only in where the line ends.
    """
    rows = (
        conn.execute(_series_sql(cols), {"u": user_id, "days": days, "expected": expected_remaining})
        .mappings()
        .all()
    )
    grouped_by: Literal["action", "model"] = "action" if rows[0]["by_action"] else "model"
    return UsageSeries(
        grouped_by=grouped_by,
        series=list(rows[0]["series"]),
        days=[
            UsageDay(
                day=row["day"],
                used={label: int(tokens) for label, tokens in row["used"].items()},
                failed=int(row["failed"]),
                granted=int(row["granted"]),
                deducted=int(row["deducted"]),
                remaining=int(row["remaining"]),
            )
            for row in rows
        ],
    )


@lru_cache
def _consumption_sql(cols: Columns) -> TextClause:
    t = "t"
    created = cols.created(t)
    return text(f"""
    SELECT g.day, coalesce(c.tokens, 0)::text AS tokens
    FROM (SELECT d::date AS day
          FROM generate_series(CAST(:first AS timestamp), CAST(:last AS timestamp), interval '1 day') AS d) g
    LEFT JOIN (
        SELECT {_utc_day(created)} AS day, sum({cols.tokens(t)}) AS tokens
        FROM token_usage t
        WHERE {created} >= {_from_day("CAST(:first AS date)")}
          AND {created} < {_from_day("CAST(:last AS date) + 1")}
          AND {cols.success(t)} AND {cols.is_usage(t)}
        GROUP BY 1
    ) c ON c.day = g.day
    ORDER BY g.day
    """)


def fleet_consumption(conn: Connection, cols: Columns, first: date, last: date) -> list[tuple[date, int]]:
    """Successful consumption of every user per UTC day from `first` to `last`, a day without rows as 0.

    One aggregate over the rows in the span (restricted by created_at), read as the fleet scan reads them.
    """
    rows = conn.execute(_consumption_sql(cols), {"first": first, "last": last})
    return [(row.day, int(row.tokens)) for row in rows]
