"""The discrepancy scan: folded totals plus the ledger's rows since, or the whole ledger, judged with the
check's arithmetic and diagnosed with its findings.

The digest, which needs every discrepant user, streams them; the cause groups read the largest ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.domain.balance import balance_from_sums
from core.domain.findings import diagnose
from core.domain.models import UserRef
from core.domain.reports import DiscrepancyRow
from core.domain.rollups import LedgerRead
from core.domain.tiers import Tiers, known_amounts
from core.settings import Settings
from core.store.columns import Columns
from core.store.fleet import email_lookup
from core.store.product import ProductShape
from core.store.rollup_state import ledger_read, rollups_table
from core.store.scan import discrepancy_cte
from core.store.signals import read_fleet_signals
from core.store.tiers import load_tiers


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
    email, email_join = email_lookup(cols, "f")
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
    email, email_join = email_lookup(cols, "f")
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
