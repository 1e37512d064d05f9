"""Fleet scans in SQL: low balances, the discrepancy scan (folded totals plus the ledger's rows since, or the
whole ledger), and top usage.

Every list is counted and paged by the database, so the bot only ever holds one page of rows whatever
the size of the ledger; the digest, which needs every discrepant user, streams them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.domain.balance import balance_from_sums
from core.domain.findings import diagnose
from core.domain.models import Page, UserRef
from core.domain.reports import (
    DiscrepancyRow,
    FleetTotals,
    LowBalanceReport,
    LowBalanceRow,
    TopReport,
    TopRow,
)
from core.domain.rollups import LedgerRead
from core.domain.tiers import Tiers, known_amounts
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.product import ProductShape
from core.store.rollup_state import ledger_read, rollups_table
from core.store.scan import discrepancy_cte
from core.store.signals import read_fleet_signals
from core.store.tiers import load_tiers


def _email_join(cols: Columns, alias: str) -> tuple[str, str]:
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


def _scan_params(
    settings: Settings, tiers: Tiers, minimum: int, ledger: LedgerRead | None = None
) -> dict[str, Any]:
    return {
        "tier_grants": {tier: str(amount) for tier, amount in tiers.amounts.items()},
        "grace": settings.tokens_scan_grace_seconds,
        "minimum": minimum,
        "watermark": ledger.folded_to if ledger else None,
    }


def _rollups(conn: Connection, settings: Settings, ledger: LedgerRead) -> str | None:
    """The folded totals a scan adds the rows after the watermark to, where they can be used.

    Their scan joins one row per user to each profile by the id's text, an expression the planner has no
    statistics for: its estimates then choose merge joins that sort every user, and JIT compilation
    that takes longer than the arithmetic it compiles (at 600,000 users, 8.4 s against 2.6 s). Hash
    joins and no JIT, for this transaction only.
    """
    if ledger.folded_to is None:
        return None
    conn.execute(text("SELECT set_config('jit', 'off', true), set_config('enable_mergejoin', 'off', true)"))
    return rollups_table(settings)


def _statement(sql: str) -> Any:
    return text(sql).bindparams(bindparam("tier_grants", type_=JSONB))


class Discrepant(NamedTuple):
    """The discrepant users a cause grouping looks at, and what it leaves out."""

    rows: list[DiscrepancyRow]
    """The largest `window` of them, largest first, diagnosed."""
    total: int
    """Every discrepant user over the minimum (deferred ones apart)."""
    deferred: int
    ledger: LedgerRead


def discrepant_users(
    conn: Connection, shape: ProductShape, settings: Settings, *, minimum: int, window: int
) -> Discrepant:
    """The `window` largest discrepant users, diagnosed, with how many there are in all and how the scan
    read the ledger (folded totals and the rows since, or every row).

    Grouping by cause needs each user's findings, and those need their rows' signals: bounded by the
    window, the signals' statement and the memory stay the same size whatever the fleet's. The caller's
    snapshot (REPEATABLE READ) makes the balances and the findings agree.
    """
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    ledger = ledger_read(conn, cols, tiers, settings)
    email, email_join = _email_join(cols, "f")
    sql = f"""
    WITH {discrepancy_cte(cols, tiers, rollups=_rollups(conn, settings, ledger))}
    SELECT c.matched_total, c.deferred_total, f.*, {email}
    FROM (
        SELECT count(*) FILTER (WHERE NOT deferred) AS matched_total,
               count(*) FILTER (WHERE deferred) AS deferred_total
        FROM flagged
    ) c
    LEFT JOIN LATERAL (
        SELECT * FROM flagged WHERE NOT deferred ORDER BY worst DESC, user_id LIMIT :window
    ) f ON true
    {email_join}
    ORDER BY f.worst DESC, f.user_id
    """
    params = {**_scan_params(settings, tiers, minimum, ledger), "window": window}
    rows = conn.execute(_statement(sql), params).mappings().all()
    first = rows[0]
    return Discrepant(
        _diagnosed(conn, cols, settings, tiers, [row for row in rows if row["user_id"] is not None]),
        int(first["matched_total"]),
        int(first["deferred_total"]),
        ledger,
    )


def scan_ledger(conn: Connection, shape: ProductShape, settings: Settings) -> LedgerRead:
    """How a scan on `conn` reads the ledger now: folded totals plus the rows since, or every row."""
    cols = Columns.of(shape, settings)
    return ledger_read(conn, cols, load_tiers(conn, shape, settings), settings)


def stream_discrepancies(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    *,
    minimum: int,
    ledger: LedgerRead | None = None,
    batch: int = 1_000,
) -> Iterator[dict[str, Any]]:
    """Every discrepant user, largest first, through a server-side cursor: memory stays one batch.

    `ledger` is how the scan reads the ledger (`scan_ledger`), for a caller that reports it."""
    tiers = load_tiers(conn, shape, settings)
    ledger = ledger or ledger_read(conn, Columns.of(shape, settings), tiers, settings)
    sql = f"""
    WITH {discrepancy_cte(Columns.of(shape, settings), tiers, rollups=_rollups(conn, settings, ledger))}
    SELECT user_id, worst, current_used - calculated_used AS used_discrepancy,
           current_remaining - expected_remaining AS remaining_discrepancy, deferred
    FROM flagged ORDER BY worst DESC, user_id
    """
    statement = _statement(sql).execution_options(stream_results=True, yield_per=batch)
    result = conn.execute(statement, _scan_params(settings, tiers, minimum, ledger))
    for row in result.mappings():
        yield dict(row)


def read_discrepancies(
    conn: Connection, shape: ProductShape, settings: Settings, user_ids: list[str]
) -> list[DiscrepancyRow]:
    """The scan's balances and the check's findings for chosen users, in the order given."""
    if not user_ids:
        return []
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    email, email_join = _email_join(cols, "f")
    sql = f"""
    WITH {discrepancy_cte(cols, tiers, chosen_users=True)}
    SELECT f.*, {email} FROM judged f {email_join}
    """
    params = {**_scan_params(settings, tiers, 0), "ids": user_ids}
    found = {row["user_id"]: row for row in conn.execute(_statement(sql), params).mappings()}
    return _diagnosed(conn, cols, settings, tiers, [found[u] for u in user_ids if u in found])


def _diagnosed(
    conn: Connection, cols: Columns, settings: Settings, tiers: Tiers, rows: list[Any]
) -> list[DiscrepancyRow]:
    """Scanned rows as the check's Balances, diagnosed by the check's own findings in this snapshot."""
    signals = read_fleet_signals(conn, cols, settings, [row["user_id"] for row in rows])
    known = known_amounts(tiers, cols.shape.remaining_default)
    diagnosed = []
    for row in rows:
        balance = balance_from_sums(row, tiers, cost_unit=cols.cost_unit, gross_grants=int(row["all_grants"]))
        diagnosed.append(
            DiscrepancyRow(
                user=UserRef(user_id=row["user_id"], email=row["email"]),
                balance=balance,
                findings=diagnose(balance, signals[row["user_id"]], known),
            )
        )
    return diagnosed


@lru_cache
def _low_balance_sql(cols: Columns) -> TextClause:
    p, t = "p", "t"
    remaining = cols.balance(p, REMAINING)
    raw = f"p.{REMAINING}"
    # The raw column narrows first (its index serves `<` and IS NULL), the read value decides.
    narrow = f"({raw} < :threshold OR {raw} IS NULL) AND" if cols.profiles.has(REMAINING) else ""
    email, email_join = _email_join(cols, "pg")
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
    email, email_join = _email_join(cols, "pg")
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
