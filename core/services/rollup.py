"""`tokens-bot rollup`: fold the ledger's new rows into per-user totals, or verify the totals.

The ledger is read where fleet scans read it (DATABASE_READ_URL when that is a standby of the primary,
once it has replayed everything the primary had committed when the watermark was chosen); the totals are
written on the primary, from where replication brings them to the standby with the rows they sum.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from core.domain.errors import ProductDataError, ReplicaBehindError
from core.domain.rollups import FoldResult, VerifyResult
from core.settings import Settings
from core.store import rollup_state, rollups
from core.store.catalog import inspect_product
from core.store.columns import Columns
from core.store.db import unit_of_work
from core.store.ledger_sums import foldable
from core.store.rollup_verify import verify
from core.store.tiers import load_tiers

# How long a fold waits for the standby to replay what the primary had committed.
REPLAY_WAIT_SECONDS = 60.0


def fold_ledger(
    engine: Engine,
    scan_engine: Engine,
    settings: Settings,
    *,
    full: bool = False,
    incremental_only: bool = False,
) -> FoldResult:
    """One fold, committed on the primary; a fold that finds another one running skips, and so does an
    `incremental_only` one (the scheduler's) where a full fold is due."""
    with unit_of_work(engine, local={"work_mem": settings.tokens_work_mem}) as primary:
        if not rollup_state.try_lock(primary, settings):
            return FoldResult(ran=False)
        if incremental_only and rollup_state.state(primary, settings) is None:
            return FoldResult(ran=False, full_reason="first fold")
        current, watermark, lsn = rollup_state.fold_bound(primary, settings)
        with _ledger(engine, scan_engine, settings, lsn) as (reader, local):
            shape = inspect_product(reader, settings)
            cols = Columns.of(shape, settings)
            if not foldable(cols):
                raise ProductDataError(
                    "token_usage.created_at is not a timestamp, so the ledger cannot be folded by time;"
                    " fleet scans read the whole ledger."
                )
            tiers = load_tiers(reader, shape, settings)
            result = rollups.fold(
                primary,
                reader,
                cols,
                tiers,
                settings,
                current,
                watermark,
                full=full,
                incremental_only=incremental_only,
                local=local,
            )
        primary.commit()
    return result


def verify_ledger(engine: Engine, scan_engine: Engine, settings: Settings) -> VerifyResult:
    """The totals against a full scan, both read in one snapshot where the scans read the ledger."""
    with unit_of_work(engine, read_only=True) as primary:
        lsn = rollup_state.wal_position(primary)
    with _ledger(engine, scan_engine, settings, lsn) as (reader, _):
        shape = inspect_product(reader, settings)
        return verify(reader, Columns.of(shape, settings), load_tiers(reader, shape, settings), settings)


@contextmanager
def _ledger(
    engine: Engine, scan_engine: Engine, settings: Settings, lsn: str
) -> Iterator[tuple[Connection, bool]]:
    """A snapshot of the ledger: on the standby holding every commit up to `lsn`, else on the primary; and
    whether it is the primary's (a fold then moves the sums in SQL rather than through this process)."""
    reader = engine
    if scan_engine is not engine:
        with unit_of_work(scan_engine, read_only=True) as conn:
            if rollup_state.is_standby(conn):
                if not rollup_state.wait_for_replay(conn, lsn, REPLAY_WAIT_SECONDS):
                    raise ReplicaBehindError(
                        f"The read replica did not replay the primary's commits within {REPLAY_WAIT_SECONDS:.0f} s;"
                        " nothing was folded. The next run tries again."
                    )
                reader = scan_engine
    with unit_of_work(
        reader, read_only=True, isolation="REPEATABLE READ", local={"work_mem": settings.tokens_work_mem}
    ) as conn:
        yield conn, reader is engine
