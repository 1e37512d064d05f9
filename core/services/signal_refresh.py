"""Keeping the finding signals of the largest discrepancies, so the lists that group them by cause do not
count them again (core.store.signal_cache). The scheduler runs it after each fold, `tokens-bot rollup`
after its fold.

The signals are counted where fleet scans read the ledger (DATABASE_READ_URL where set) and kept on the
primary; each is kept with the number of ledger rows it was counted over in that snapshot.
"""

from __future__ import annotations

from sqlalchemy import Engine

from core.domain.rollups import SignalsKept
from core.services.fixes import CAUSE_WINDOW
from core.settings import Settings
from core.store.catalog import inspect_product
from core.store.columns import Columns
from core.store.db import unit_of_work
from core.store.discrepancies import discrepant_users
from core.store.signal_cache import forget_signals, keep_signals


def keep_largest_signals(
    engine: Engine, scan_engine: Engine, settings: Settings, *, recount: bool = False
) -> SignalsKept:
    """Count the signals of the largest discrepancies whose kept ones no longer hold, keep them, and forget
    those of users no longer among them. `recount` (after a full fold) forgets every kept one first, so a
    row changed in place is counted as it is now."""
    if recount:
        with unit_of_work(engine) as primary:
            forget_signals(primary, settings)
            primary.commit()
    with unit_of_work(scan_engine, read_only=True, isolation="REPEATABLE READ") as reader:
        shape = inspect_product(reader, settings)
        found = discrepant_users(
            reader, shape, settings, minimum=settings.tokens_scan_threshold, window=CAUSE_WINDOW, current=True
        )
    with unit_of_work(engine) as primary:
        keep_signals(primary, Columns.of(shape, settings), settings, found.counted)
        forgotten = forget_signals(primary, settings, keep=[row.user.user_id for row in found.rows])
        primary.commit()
    return SignalsKept(
        counted=len(found.counted), reused=len(found.rows) - len(found.counted), forgotten=forgotten
    )
