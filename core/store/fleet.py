"""Fleet scans in SQL: low balances, top usage and the fleet's totals (the discrepancy scan is in
core.store.discrepancies).

Every list is counted and paged by the database, so the bot only ever holds one page of rows whatever
the size of the ledger.
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import Connection, TextClause, text

from core.domain.models import Page, UserRef
from core.domain.reports import (
    FleetTotals,
    LowBalanceReport,
    LowBalanceRow,
    TopReport,
    TopRow,
)
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.product import ProductShape


def email_lookup(cols: Columns, alias: str) -> tuple[str, str]:
    """The select expression and join that label a page's rows (user ids as text) with emails.

    Where the email table's id has the profiles' type, the text goes back to that type so the email
    table's key serves the join; otherwise both sides are compared as text.
    """
    shape = cols.shape
    if shape.email_source is None or shape.email_id_type is None:
        return "NULL::text AS email", ""
    src = shape.email_source
    email_id = f'e."{src.id_column}"'
    if shape.email_id_type == cols.profiles.column("user_id").type:
        same = f"{email_id} = CAST({alias}.user_id AS {shape.email_id_type})"
    else:
        same = f"{email_id}::text = {alias}.user_id"
    # LATERAL with LIMIT 1: an email table with repeated ids must not repeat the user.
    return (
        "em.email AS email",
        f'LEFT JOIN LATERAL (SELECT e."{src.column}"::text AS email FROM {shape.email_table} e'
        f" WHERE {same} ORDER BY 1 LIMIT 1) em ON true",
    )


def _requested_offset(page: int, size: int) -> int:
    """The first row of the page asked for, before any clamping to the rows there are."""
    return (max(page, 1) - 1) * size


def _page_at(offset: int, total: int, size: int) -> Page:
    """The page a (clamped) row offset falls on, out of the pages `total` rows fill."""
    return Page(number=offset // size + 1, count=max(1, math.ceil(total / size)))


@lru_cache
def _low_balance_sql(cols: Columns) -> TextClause:
    p, t = "p", "t"
    remaining = cols.balance(p, REMAINING)
    raw = f"p.{REMAINING}"
    # The raw column narrows first (its index serves `<` and IS NULL), the read value decides.
    narrow = f"({raw} < :threshold OR {raw} IS NULL) AND" if cols.profiles.has(REMAINING) else ""
    email, email_join = email_lookup(cols, "pg")
    return text(f"""
    WITH matched AS (
        SELECT p.user_id::text AS user_id, {remaining} AS remaining, {cols.balance(p, USED)} AS used,
               {cols.unset(p, REMAINING)} AS remaining_unset
        FROM {cols.current_profiles("p")} WHERE {narrow} {remaining} < :threshold
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
        SELECT coalesce(sum({cols.tokens(t)}), 0) AS recent_used
        FROM token_usage t
        WHERE {cols.ledger_user_is("pg.user_id")} AND {cols.success(t)} AND {cols.is_usage(t)}
          AND {cols.is_recent(t, "make_interval(days => :window)")}
    ) burn ON true
    {email_join}
    ORDER BY pg.remaining, pg.user_id
    """)


def low_balances(
    conn: Connection, shape: ProductShape, settings: Settings, *, threshold: int, page: int
) -> LowBalanceReport:
    """`/tokens lowbalance`: users under the threshold, lowest (so negative) first, with a burn forecast.

    A profile whose balance is not set reads as 0, so it is listed (and marked) under any positive threshold.
    """
    size = settings.tokens_page_size
    window = settings.tokens_burn_window_days
    params = {"threshold": threshold, "size": size, "offset": _requested_offset(page, size), "window": window}
    rows = conn.execute(_low_balance_sql(Columns.of(shape, settings)), params).mappings().all()
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
                remaining_unset=bool(row["remaining_unset"]),
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


@lru_cache
def _top_sql(cols: Columns) -> TextClause:
    p = "p"
    email, email_join = email_lookup(cols, "pg")
    # The raw column orders (an index on it serves); a NULL, read as 0, sorts last.
    order = f"p.{USED} DESC NULLS LAST, " if cols.profiles.has(USED) else ""
    return text(f"""
    SELECT pg.*, {email}
    FROM (
        SELECT p.user_id::text AS user_id, {cols.balance(p, USED)} AS used, {cols.balance(p, COST)} AS cost,
               {cols.balance(p, REMAINING)} AS remaining
        FROM {cols.current_profiles("p")}
        ORDER BY {order}p.user_id
        LIMIT :limit OFFSET :offset
    ) pg
    {email_join}
    ORDER BY pg.used DESC, pg.user_id
    """)


def top_users(conn: Connection, shape: ProductShape, settings: Settings, *, n: int, page: int) -> TopReport:
    """`/tokens top`: the `n` highest lifetime users, one page of them, out of every profile."""
    cols = Columns.of(shape, settings)
    users = int(conn.execute(text(f"SELECT count(*) FROM {cols.current_profiles('p')}")).scalar_one())
    shown = min(n, users)
    size = settings.tokens_page_size
    offset = min(_requested_offset(page, size), max(shown - 1, 0) // size * size)
    rows = conn.execute(_top_sql(cols), {"limit": min(size, shown - offset), "offset": offset}).mappings()
    return TopReport(
        cost_unit=cols.cost_unit,
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


def fleet_totals(conn: Connection, shape: ProductShape, settings: Settings) -> FleetTotals:
    """Sums over every profile, exact whatever their size (numeric, never bigint)."""
    cols, p = Columns.of(shape, settings), "p"
    remaining = cols.balance(p, REMAINING)
    row = (
        conn.execute(
            text(
                f"SELECT count(*) AS users, coalesce(sum({remaining}::numeric), 0) AS remaining,"
                f" coalesce(sum({cols.balance(p, USED)}::numeric), 0) AS used,"
                f" coalesce(sum({cols.balance(p, COST)}), 0) AS cost,"
                f" count(*) FILTER (WHERE {remaining} < 0) AS negative,"
                f" count(*) FILTER (WHERE {cols.unset(p, REMAINING)}) AS unset"
                f" FROM {cols.current_profiles('p')}"
            )
        )
        .mappings()
        .one()
    )
    return FleetTotals.model_validate({**row, "cost_unit": cols.cost_unit})
