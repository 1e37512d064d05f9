"""Fleet scans in SQL: low balances, the discrepancy scan over the whole ledger, and top usage.

Every list is counted and paged by the database, so the bot only ever holds one page of rows whatever
the size of the ledger; the digest, which needs every discrepant user, streams them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.findings import diagnose, read_ledger_signals
from core.fleet_models import (
    DiscrepancyReport,
    DiscrepancyRow,
    FleetTotals,
    LowBalanceReport,
    LowBalanceRow,
    TopReport,
    TopRow,
)
from core.models import Page, UserRef
from core.product import CONSUMPTION, WRITTEN_BY_BOT, ProductShape
from core.reconciliation import balance_from_sums
from core.settings import Settings

# Users, not ledger rows, are paged: the first-grant key sorts as (created_at, id) like the check's
# `ORDER BY created_at, id LIMIT 1`, which lets the whole scan stay one parallel hash aggregation
# (an ordered aggregate such as array_agg(... ORDER BY) would force a serial sort of the ledger).
# The id is zero-padded to a fixed width whatever its type: a UUID's text (36 characters) sorts as the
# uuid does, and a non-negative integer id's padded digits sort as the number does. The C collation
# keeps the comparison bytewise, so no locale can reorder the key or let the token suffix decide it.
_ID_WIDTH = 40
_GRANT_KEY = (
    f"to_char(t.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || lpad(t.id::text, {_ID_WIDTH}, '0')"
)
_GRANT_KEY_LENGTH = 20 + _ID_WIDTH


def _discrepancy_cte(shape: ProductShape, settings: Settings, *, chosen_users: bool = False) -> str:
    """Per user, the check's balance arithmetic (core.reconciliation) over one pass of the ledger.

    `chosen_users` narrows both tables to `:ids`, for re-reading a few users the digest picked.
    """
    tier = shape.tier_sql
    only = "AND {}.user_id = ANY(:ids)" if chosen_users else ""
    grant = "t.success AND t.action_type = 'admin_grant'"
    # Whether each configured tier amount was logged as an admin_grant by the product (tokens-bot's own
    # grants are approved extras, as in the check): one boolean per amount keeps the aggregation
    # parallel (PostgreSQL 15 cannot combine partial array_agg results).
    amounts = sorted(set(settings.tokens_tier_grants.values()))
    logged = "".join(
        f",\n               bool_or({grant} AND t.tokens_used = {int(a)} AND NOT {WRITTEN_BY_BOT}) AS logged_{i}"
        for i, a in enumerate(amounts)
    )
    tier_logged = (
        "CASE tg.amount "
        + " ".join(f"WHEN {int(a)} THEN l.logged_{i}" for i, a in enumerate(amounts))
        + " END"
        if amounts
        else "NULL::boolean"
    )
    return f"""
    tiers AS (
        SELECT key AS tier, value::bigint AS amount FROM jsonb_each_text(:tier_grants)
    ),
    ledger AS (
        SELECT t.user_id,
               coalesce(sum(t.tokens_used) FILTER (WHERE t.created_at > now() - make_interval(secs => :grace)),
                        0) AS recent_tokens,
               count(*) AS ledger_rows,
               count(*) FILTER (WHERE NOT t.success) AS failed_rows,
               coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND {CONSUMPTION}), 0) AS calculated_used,
               coalesce(sum(t.cost_estimate) FILTER (WHERE t.success AND {CONSUMPTION}), 0) AS calculated_cents,
               coalesce(sum(t.tokens_used) FILTER (WHERE {grant}), 0) AS all_grants,
               coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND t.action_type = 'admin_deduct'), 0)
                   AS admin_deductions,
               substr(min(({_GRANT_KEY} || t.tokens_used) COLLATE "C") FILTER (WHERE {grant}),
                      {_GRANT_KEY_LENGTH + 1})::bigint AS first_grant{logged}
        FROM token_usage t
        WHERE true {only.format("t")}
        GROUP BY t.user_id
    ),
    balances AS (
        SELECT p.user_id,
               p.vibe_assistant_tokens_used AS current_used,
               p.vibe_assistant_total_cost AS current_cost,
               p.vibe_assistant_tokens_remaining AS current_remaining,
               {tier} AS tier,
               coalesce(l.ledger_rows, 0) AS ledger_rows,
               coalesce(l.failed_rows, 0) AS failed_rows,
               coalesce(l.calculated_used, 0) AS calculated_used,
               round(coalesce(l.calculated_cents, 0) / 100, {shape.cost_scale}) AS calculated_cost,
               coalesce(l.admin_deductions, 0) AS admin_deductions,
               coalesce(l.all_grants, 0) AS all_grants,
               l.first_grant,
               coalesce(tg.amount, l.first_grant, 0) AS initial_grant,
               -- As choose_initial_grant: a tier amount counts as logged when an admin_grant of that
               -- amount exists that tokens-bot did not write; a first admin_grant (the bot's too) is
               -- logged by definition, so it is counted once either way.
               CASE WHEN tg.amount IS NOT NULL THEN coalesce({tier_logged}, false)
                    ELSE l.first_grant IS NOT NULL END AS assumed_grant_logged,
               coalesce(l.recent_tokens, 0) AS recent_tokens
        FROM user_profiles p
        LEFT JOIN ledger l ON l.user_id = p.user_id
        LEFT JOIN tiers tg ON tg.tier = {tier}
        WHERE true {only.format("p")}
    ),
    judged AS (
        SELECT b.*, g.admin_grants,
               b.initial_grant + g.admin_grants - b.calculated_used - b.admin_deductions AS expected_remaining
        FROM balances b
        -- Never counted twice: an admin_grant row that is the initial grant is not also an extra grant.
        CROSS JOIN LATERAL (
            SELECT b.all_grants - CASE WHEN b.assumed_grant_logged THEN b.initial_grant ELSE 0 END
                AS admin_grants
        ) g
    ),
    flagged AS (
        -- A write still in progress (ledger row in, balance not yet) can explain at most the tokens of
        -- the rows inside the grace window: only a discrepancy within that allowance is deferred.
        SELECT j.*, w.worst, w.worst - j.recent_tokens <= :minimum AS deferred
        FROM judged j
        CROSS JOIN LATERAL (
            SELECT greatest(abs(j.current_used - j.calculated_used),
                            abs(j.current_remaining - j.expected_remaining)) AS worst
        ) w
        WHERE w.worst > :minimum
    )"""


def _email_join(shape: ProductShape, alias: str) -> tuple[str, str]:
    """The select expression and join that label a page's rows with emails, where the product has them."""
    if shape.email_source is None:
        return "NULL::text AS email", ""
    src = shape.email_source
    return (
        f'e."{src.column}" AS email',
        f'LEFT JOIN {shape.email_table} e ON e."{src.id_column}" = {alias}.user_id',
    )


def _requested_offset(page: int, size: int) -> int:
    """The first row of the page asked for, before any clamping to the rows there are."""
    return (max(page, 1) - 1) * size


def _page_at(offset: int, total: int, size: int) -> Page:
    """The page a (clamped) row offset falls on, out of the pages `total` rows fill."""
    return Page(number=offset // size + 1, count=max(1, math.ceil(total / size)))


def _scan_params(settings: Settings, minimum: int) -> dict[str, Any]:
    return {
        "tier_grants": {tier: str(amount) for tier, amount in settings.tokens_tier_grants.items()},
        "grace": settings.tokens_scan_grace_seconds,
        "minimum": minimum,
    }


def _statement(sql: str) -> Any:
    return text(sql).bindparams(bindparam("tier_grants", type_=JSONB))


def scan_discrepancies(
    conn: Connection, shape: ProductShape, settings: Settings, *, minimum: int, page: int
) -> DiscrepancyReport:
    """`/tokens discrepancies`: one aggregation over the ledger, counted and paged in the same statement.

    The caller's snapshot (REPEATABLE READ) makes the count, the page and each row's findings agree.
    """
    size = settings.tokens_page_size
    email, email_join = _email_join(shape, "pg")
    # The page's offset is clamped in SQL against the count, so one statement answers any page.
    sql = f"""
    WITH {_discrepancy_cte(shape, settings)}
    SELECT c.matched_total, c.deferred_total, c.page_offset, pg.*, {email}
    FROM (
        SELECT count(*) FILTER (WHERE NOT deferred) AS matched_total,
               count(*) FILTER (WHERE deferred) AS deferred_total,
               least(:offset, greatest(count(*) FILTER (WHERE NOT deferred) - 1, 0) / :size * :size)
                   AS page_offset
        FROM flagged
    ) c
    LEFT JOIN LATERAL (
        SELECT * FROM flagged f WHERE NOT f.deferred
        ORDER BY f.worst DESC, f.user_id
        LIMIT :size OFFSET c.page_offset
    ) pg ON true
    {email_join}
    ORDER BY pg.worst DESC, pg.user_id
    """
    params = {**_scan_params(settings, minimum), "size": size, "offset": _requested_offset(page, size)}
    rows = conn.execute(_statement(sql), params).mappings().all()
    first = rows[0]
    total = int(first["matched_total"])
    return DiscrepancyReport(
        minimum=minimum,
        total=total,
        deferred=int(first["deferred_total"]),
        grace_seconds=settings.tokens_scan_grace_seconds,
        rows=[discrepancy_row(conn, settings, row) for row in rows if row["user_id"] is not None],
        offset=int(first["page_offset"]),
        page=_page_at(int(first["page_offset"]), total, size),
    )


def stream_discrepancies(
    conn: Connection, shape: ProductShape, settings: Settings, *, minimum: int, batch: int = 1_000
) -> Iterator[dict[str, Any]]:
    """Every discrepant user, largest first, through a server-side cursor: memory stays one batch."""
    sql = f"""
    WITH {_discrepancy_cte(shape, settings)}
    SELECT user_id, worst, current_used - calculated_used AS used_discrepancy,
           current_remaining - expected_remaining AS remaining_discrepancy, deferred
    FROM flagged ORDER BY worst DESC, user_id
    """
    statement = _statement(sql).execution_options(stream_results=True, yield_per=batch)
    result = conn.execute(statement, _scan_params(settings, minimum))
    for row in result.mappings():
        yield dict(row)


def read_discrepancies(
    conn: Connection, shape: ProductShape, settings: Settings, user_ids: list[UUID]
) -> list[DiscrepancyRow]:
    """The scan's balances and the check's findings for chosen users, in the order given."""
    if not user_ids:
        return []
    email, email_join = _email_join(shape, "f")
    sql = f"""
    WITH {_discrepancy_cte(shape, settings, chosen_users=True)}
    SELECT f.*, {email} FROM judged f {email_join}
    """
    params = {**_scan_params(settings, 0), "ids": user_ids}
    found = {row["user_id"]: row for row in conn.execute(_statement(sql), params).mappings()}
    return [discrepancy_row(conn, settings, found[u]) for u in user_ids if u in found]


def discrepancy_row(conn: Connection, settings: Settings, row: Any) -> DiscrepancyRow:
    """A scanned row as the check's Balance, diagnosed by the check's own findings in this snapshot."""
    balance = balance_from_sums(row, settings, gross_grants=int(row["all_grants"]))
    signals = read_ledger_signals(conn, settings, row["user_id"])
    return DiscrepancyRow(
        user=UserRef(user_id=row["user_id"], email=row["email"]),
        balance=balance,
        findings=diagnose(balance, signals, settings.tokens_tier_grants),
    )


_LOW_BALANCE_SQL = """
WITH matched AS (
    SELECT user_id, vibe_assistant_tokens_remaining AS remaining, vibe_assistant_tokens_used AS used
    FROM user_profiles WHERE vibe_assistant_tokens_remaining < :threshold
)
SELECT c.total, c.negative, c.page_offset, pg.*, burn.recent_used, {email}
FROM (
    SELECT count(*) AS total, count(*) FILTER (WHERE remaining < 0) AS negative,
           least(:offset, greatest(count(*) - 1, 0) / :size * :size) AS page_offset
    FROM matched
) c
LEFT JOIN LATERAL (
    SELECT * FROM matched m ORDER BY m.remaining, m.user_id LIMIT :size OFFSET c.page_offset
) pg ON true
LEFT JOIN LATERAL (
    SELECT coalesce(sum(t.tokens_used), 0) AS recent_used
    FROM token_usage t
    WHERE t.user_id = pg.user_id AND t.success AND {consumption}
      AND t.created_at > now() - make_interval(days => :window)
) burn ON true
{email_join}
ORDER BY pg.remaining, pg.user_id
"""


def low_balances(
    conn: Connection, shape: ProductShape, settings: Settings, *, threshold: int, page: int
) -> LowBalanceReport:
    """`/tokens lowbalance`: users under the threshold, lowest (so negative) first, with a burn forecast."""
    size = settings.tokens_page_size
    window = settings.tokens_burn_window_days
    email, email_join = _email_join(shape, "pg")
    sql = _LOW_BALANCE_SQL.format(
        email=email, email_join=email_join, consumption=CONSUMPTION.replace("action_type", "t.action_type")
    )
    params = {"threshold": threshold, "size": size, "offset": _requested_offset(page, size), "window": window}
    rows = conn.execute(text(sql), params).mappings().all()
    first = rows[0]
    total = int(first["total"])
    return LowBalanceReport(
        threshold=threshold,
        total=total,
        negative=int(first["negative"]),
        burn_window_days=window,
        rows=[
            LowBalanceRow(
                user=UserRef(user_id=row["user_id"], email=row["email"]),
                remaining=int(row["remaining"]),
                used=int(row["used"]),
                recent_used=int(row["recent_used"]),
                burn_window_days=window,
            )
            for row in rows
            if row["user_id"] is not None
        ],
        offset=int(first["page_offset"]),
        page=_page_at(int(first["page_offset"]), total, size),
    )


_TOP_SQL = """
SELECT p.user_id, p.vibe_assistant_tokens_used AS used, p.vibe_assistant_total_cost AS cost,
       p.vibe_assistant_tokens_remaining AS remaining, {email}
FROM user_profiles p
{email_join}
ORDER BY p.vibe_assistant_tokens_used DESC, p.user_id
LIMIT :limit OFFSET :offset
"""


def top_users(conn: Connection, shape: ProductShape, settings: Settings, *, n: int, page: int) -> TopReport:
    """`/tokens top`: the `n` highest lifetime users, one page of them, out of every profile."""
    users = int(conn.execute(text("SELECT count(*) FROM user_profiles")).scalar_one())
    shown = min(n, users)
    size = settings.tokens_page_size
    offset = min(_requested_offset(page, size), max(shown - 1, 0) // size * size)
    email, email_join = _email_join(shape, "p")
    rows = conn.execute(
        text(_TOP_SQL.format(email=email, email_join=email_join)),
        {"limit": min(size, shown - offset), "offset": offset},
    ).mappings()
    return TopReport(
        requested=n,
        users=users,
        rows=[
            TopRow(
                user=UserRef(user_id=row["user_id"], email=row["email"]),
                used=int(row["used"]),
                cost=Decimal(row["cost"]),
                remaining=int(row["remaining"]),
            )
            for row in rows
        ],
        offset=offset,
        page=_page_at(offset, shown, size),
    )


def fleet_totals(conn: Connection) -> FleetTotals:
    row = (
        conn.execute(
            text(
                "SELECT count(*) AS users,"
                " coalesce(sum(vibe_assistant_tokens_remaining), 0) AS remaining,"
                " coalesce(sum(vibe_assistant_tokens_used), 0) AS used,"
                " coalesce(sum(vibe_assistant_total_cost), 0) AS cost,"
                " count(*) FILTER (WHERE vibe_assistant_tokens_remaining < 0) AS negative"
                " FROM user_profiles"
            )
        )
        .mappings()
        .one()
    )
    return FleetTotals.model_validate(dict(row))
