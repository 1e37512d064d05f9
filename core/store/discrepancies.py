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
from core.store.pipeline import Statement, stream_rows
from core.store.product import ProductShape
from core.store.rollup_state import ledger_read, rollups_table
from core.store.scan import discrepancy_cte, scored_cte, tier_grants
from core.store.signal_cache import kept_signals
from core.store.signals import read_fleet_signals
from core.store.tiers import load_tiers


def scan_params(
    settings: Settings, tiers: Tiers, minimum: int, ledger: LedgerRead | None = None
) -> dict[str, Any]:
    """The parameters of the scans' SQL (core.store.scan), bound by `scan_statement`."""
    return {
        "tier_grants": tier_grants(tiers),
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


def scan_statement(sql: str) -> Any:
    """A scan's SQL with `:tier_grants` bound as JSONB."""
    return text(sql).bindparams(bindparam("tier_grants", type_=JSONB))


class Discrepant(NamedTuple):
    """The discrepant users a cause grouping looks at, and what it leaves out."""

    rows: list[DiscrepancyRow]
    """The largest `window` of them, largest first, diagnosed."""
    total: int
    """Every discrepant user over the minimum (deferred ones apart)."""
    deferred: int
    ledger: LedgerRead
    counted: dict[str, tuple[int, dict[str, Any]]]
    """The signals counted from the rows, with the number of rows they were counted over."""
    older: frozenset[str]
    """Users diagnosed from signals kept before their newest rows (`current` left them so)."""


def discrepant_users(
    conn: Connection, shape: ProductShape, settings: Settings, *, minimum: int, window: int, current: bool
) -> Discrepant:
    """The `window` largest discrepant users, diagnosed, with how many there are in all and how the scan
    read the ledger (folded totals and the rows since, or every row).

    Grouping by cause needs each user's findings, and those need their rows' signals: bounded by the
    window, the signals' statement and the memory stay the same size whatever the fleet's. Signals kept
    for users whose rows have not changed since (core.store.signal_cache) are not counted again; without
    `current`, neither are those kept before a user's newest rows: a grouping may lag one fold behind for
    them (`rediagnose` counts the rows a page shows). The caller's snapshot (REPEATABLE READ) makes the
    balances and the findings agree.
    """
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    ledger = ledger_read(conn, cols, tiers, settings)
    rollups = _rollups(conn, settings, ledger)
    # The sorted subquery is planned on its own, so the workers sort and pass on only these three
    # columns. Flattened into the window's query, the sort carried every sum the score is computed from
    # (434 bytes a user, spilled to disk) for the leader to compute the score again: at 288,820 discrepant
    # users the statement took 2.4 s instead of 1.5 s.
    sql = f"""
    WITH {scored_cte(cols, tiers, rollups=rollups)}
    SELECT s.user_id, s.deferred,
           count(*) FILTER (WHERE NOT s.deferred) OVER () AS matched_total,
           count(*) FILTER (WHERE s.deferred) OVER () AS deferred_total
    FROM (SELECT user_id, deferred, worst FROM scored ORDER BY deferred, worst DESC, user_id) s
    ORDER BY s.deferred, s.worst DESC, s.user_id
    LIMIT greatest(:window, 1)
    """
    params = scan_params(settings, tiers, minimum, ledger)
    found = conn.execute(scan_statement(sql), {**params, "window": window}).mappings().all()
    largest = [row["user_id"] for row in found if not row["deferred"]][:window]
    judged = _judged(conn, cols, tiers, rollups, params, largest)
    ledger_rows = {row["user_id"]: int(row["ledger_rows"]) for row in judged}
    kept = kept_signals(conn, cols, settings, list(ledger_rows))
    usable = {u: signals for u, (rows, signals) in kept.items() if rows == ledger_rows[u] or not current}
    counted = _signals_of(conn, cols, settings, [u for u in ledger_rows if u not in usable])
    return Discrepant(
        _diagnosed(cols, tiers, judged, {**usable, **counted}),
        int(found[0]["matched_total"]) if found else 0,
        int(found[0]["deferred_total"]) if found else 0,
        ledger,
        {u: (ledger_rows[u], signals) for u, signals in counted.items()},
        frozenset(u for u in usable if kept[u][0] != ledger_rows[u]),
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
    """Every discrepant user, largest first, `batch` rows at a time: memory stays one batch.

    `ledger` is how the scan reads the ledger (`scan_ledger`), for a caller that reports it. Until the
    last row is read, `conn` serves nothing else (core.store.pipeline.stream_rows)."""
    tiers = load_tiers(conn, shape, settings)
    ledger = ledger or ledger_read(conn, Columns.of(shape, settings), tiers, settings)
    sql = f"""
    WITH {scored_cte(Columns.of(shape, settings), tiers, rollups=_rollups(conn, settings, ledger))}
    SELECT user_id, worst, used_discrepancy, remaining_discrepancy, deferred
    FROM scored ORDER BY worst DESC, user_id
    """
    params = scan_params(settings, tiers, minimum, ledger)
    yield from stream_rows(conn, Statement(scan_statement(sql), params), batch=batch)


def read_discrepancies(
    conn: Connection, shape: ProductShape, settings: Settings, user_ids: list[str]
) -> list[DiscrepancyRow]:
    """The scan's balances and the check's findings for chosen users, in the order given."""
    if not user_ids:
        return []
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    found = _judged(conn, cols, tiers, None, scan_params(settings, tiers, 0), user_ids)
    return _diagnosed(cols, tiers, found, read_fleet_signals(conn, cols, settings, user_ids))


# Users whose signals one statement counts. Past about a thousand, the planner estimates their rows at a
# fraction of the ledger and reads the whole ledger in parallel to find their reversals (3.6 s at 30M rows)
# instead of each user's rows by the user_id index.
_SIGNALS_AT_ONCE = 500


def _signals_of(
    conn: Connection, cols: Columns, settings: Settings, user_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The signals of many users, counted a few hundred at a time (`_SIGNALS_AT_ONCE`)."""
    counted: dict[str, dict[str, Any]] = {}
    for start in range(0, len(user_ids), _SIGNALS_AT_ONCE):
        counted.update(read_fleet_signals(conn, cols, settings, user_ids[start : start + _SIGNALS_AT_ONCE]))
    return counted


def rediagnose(
    conn: Connection, shape: ProductShape, settings: Settings, rows: list[DiscrepancyRow]
) -> list[DiscrepancyRow]:
    """Rows diagnosed from older signals, diagnosed again from their rows now (balances as scanned)."""
    if not rows:
        return rows
    cols = Columns.of(shape, settings)
    signals = read_fleet_signals(conn, cols, settings, [row.user.user_id for row in rows])
    known = known_amounts(load_tiers(conn, shape, settings), cols.shape.remaining_default)
    return [
        row.model_copy(update={"findings": diagnose(row.balance, signals[row.user.user_id], known)})
        for row in rows
    ]


def _judged(
    conn: Connection,
    cols: Columns,
    tiers: Tiers,
    rollups: str | None,
    params: dict[str, Any],
    user_ids: list[str],
) -> list[Any]:
    """The judged balances of chosen users, whatever their discrepancy, with their emails, in the order
    given: from `rollups` and the rows since where given, else from their rows of the whole ledger."""
    email, email_join = email_lookup(cols, "f")
    sql = f"""
    WITH {discrepancy_cte(cols, tiers, chosen_users=True, rollups=rollups)}
    SELECT f.*, {email} FROM judged f {email_join}
    """
    found = {
        row["user_id"]: row
        for row in conn.execute(scan_statement(sql), {**params, "ids": user_ids}).mappings()
    }
    return [found[u] for u in user_ids if u in found]


def _diagnosed(
    cols: Columns, tiers: Tiers, rows: list[Any], signals: dict[str, dict[str, Any]]
) -> list[DiscrepancyRow]:
    """Scanned rows as the check's Balances, diagnosed by the check's own findings from their signals."""
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
