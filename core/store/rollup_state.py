"""The folded totals' state in the bot's schema: whether a scan can use them, and where a fold may go.

See core.store.rollups for what the totals hold and promise.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.domain.rollups import LedgerRead
from core.domain.tiers import Tiers
from core.settings import Settings
from core.store.columns import Columns
from core.store.ledger_sums import foldable, tier_amounts

# Any fixed number works: two folds of one schema must not interleave.
_FOLD_LOCK = 7_412_008


def rollups_table(settings: Settings) -> str:
    return f'"{settings.tokens_schema}".ledger_rollups'


def rows_reading(cols: Columns) -> dict[str, Any]:
    """How the ledger's rows are read: the action types and the column types. Figures counted from the rows
    (folded totals, kept signals) no longer hold once it changes."""
    return {
        "grant": cols.grant_actions,
        "deduct": cols.deduct_actions,
        "reset": cols.reset_actions,
        "ledger": {c.name: c.type for c in cols.ledger.columns},
    }


def config_of(cols: Columns, tiers: Tiers) -> str:
    """What the folded sums depend on besides the rows: totals folded under other settings are not used."""
    return json.dumps({**rows_reading(cols), "tier_amounts": tier_amounts(tiers)}, sort_keys=True)


def ledger_read(conn: Connection, cols: Columns, tiers: Tiers, settings: Settings) -> LedgerRead:
    """Whether a scan on `conn` can add the rows after the watermark to folded totals, and if not, why."""
    if not foldable(cols):
        return LedgerRead(full_reason="token_usage.created_at is not a timestamp, so no totals can be folded")
    if not _has_time_index(conn):
        return LedgerRead(
            full_reason="token_usage has no index on created_at to find the rows since the last fold"
            " (`tokens-bot doctor` gives the statement that creates one)"
        )
    current = state(conn, settings)
    if current is None:
        return LedgerRead(
            full_reason="no ledger totals have been folded yet (`tokens-bot rollup` folds them)"
        )
    if current["config"] != config_of(cols, tiers):
        return LedgerRead(
            full_reason="the ledger totals were folded under other settings (the next `tokens-bot rollup`"
            " folds them again)"
        )
    return LedgerRead(folded_to=current["watermark"])


def _has_time_index(conn: Connection) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_index x"
                " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
                " WHERE x.indrelid = to_regclass('token_usage') AND x.indisvalid AND x.indpred IS NULL"
                " AND a.attname = 'created_at')"
            )
        ).scalar_one()
    )


def state(conn: Connection, settings: Settings, *, lock: bool = False) -> Any:
    schema = settings.tokens_schema
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".rollup_state'}).scalar_one() is None:
        return None
    return (
        conn.execute(
            text(
                f'SELECT watermark, config, full_at, relooked_to FROM "{schema}".rollup_state WHERE id = 1'
                + (" FOR UPDATE" if lock else "")
            )
        )
        .mappings()
        .first()
    )


def try_lock(primary: Connection, settings: Settings) -> bool:
    """Until commit, the only fold of this schema; False at once when another one is folding."""
    return bool(
        primary.execute(
            text("SELECT pg_try_advisory_xact_lock(:k, hashtext(:s))"),
            {"k": _FOLD_LOCK, "s": settings.tokens_schema},
        ).scalar_one()
    )


def fold_bound(primary: Connection, settings: Settings) -> tuple[Any, datetime, str]:
    """The locked state, the next watermark, and the primary's WAL position when it was taken.

    The watermark is before every transaction open on the primary now (their rows, stamped with their
    start, commit later) and the lag behind the clock, and never goes back. It must be read before the
    fold's snapshot is taken: a transaction that commits between the two is then one that was open here.
    """
    current = state(primary, settings, lock=True)
    lag = max(settings.tokens_rollup_lag_seconds, settings.tokens_scan_grace_seconds)
    row = primary.execute(
        text(
            """
            SELECT greatest(CAST(:previous AS timestamptz), least(
                       clock_timestamp() - make_interval(secs => :lag),
                       (SELECT min(xact_start) - interval '1 millisecond' FROM pg_stat_activity
                        WHERE backend_type = 'client backend' AND datname = current_database()
                          AND pid <> pg_backend_pid()),
                       (SELECT min(prepared) - interval '1 millisecond' FROM pg_prepared_xacts
                        WHERE database = current_database()))) AS bound,
                   pg_current_wal_lsn()::text AS lsn
            """
        ),
        {"previous": current["watermark"] if current else None, "lag": lag},
    ).one()
    return current, row.bound, row.lsn


def wal_position(primary: Connection) -> str:
    return str(primary.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one())


def is_standby(conn: Connection) -> bool:
    return bool(conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one())


def wait_for_replay(standby: Connection, lsn: str, timeout_seconds: float) -> bool:
    """Whether the standby has replayed every commit up to `lsn` (False when not within the timeout)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        replayed = standby.execute(
            text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
            {"lsn": lsn},
        ).scalar_one()
        if replayed:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
