"""The tick's alerts: balance crossings every tick (cheap), discrepancies at each fleet scan (the whole
ledger, at most once per TOKENS_ALERT_SCAN_MINUTES), in the tick's transaction and under its lock."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Connection

from core.domain.alerts import Alert, FleetSnapshot, lowest_crossings
from core.settings import Settings
from core.store.alerts import (
    balance_crossings,
    discrepancy_crossings,
    emails_of,
    record_fleet_scan,
    scan_due,
)
from core.store.discrepancies import stream_discrepancies
from core.store.fleet import fleet_totals, low_balances
from core.store.product import ProductShape


def find_alerts(
    primary: Connection,
    reading: Callable[[], AbstractContextManager[Connection]],
    shape: ProductShape,
    settings: Settings,
    now: datetime,
) -> list[Alert]:
    """New crossings since the last tick, recorded so that no later tick tells them again.

    The fleet scan reads on `reading()` (the scan engine, a replica where there is one) and records what it
    found on `primary`, with the fleet's numbers for App Home.
    """
    alerts = lowest_crossings(balance_crossings(primary, shape, settings, now))
    if scan_due(primary, settings, now):
        alerts += _scan(primary, reading, shape, settings, now)
    emails = emails_of(primary, shape, settings, [alert.user_id for alert in alerts])
    return [alert.model_copy(update={"email": emails.get(alert.user_id)}) for alert in alerts]


def _scan(
    primary: Connection,
    reading: Callable[[], AbstractContextManager[Connection]],
    shape: ProductShape,
    settings: Settings,
    now: datetime,
) -> list[Alert]:
    """The fleet scan: new discrepancies, and the fleet's numbers recorded for App Home."""
    minimum = settings.tokens_problem_threshold
    with reading() as reader:
        scanned = stream_discrepancies(reader, shape, settings, minimum=minimum)
        fired, discrepant = discrepancy_crossings(primary, settings, scanned, now)
        totals = fleet_totals(reader, shape, settings)
        low = low_balances(reader, shape, settings, threshold=settings.tokens_lowbalance_threshold, page=1)
    snapshot = FleetSnapshot(
        scanned_at=now,
        users=totals.users,
        negative=totals.negative,
        low_balances=low.total,
        low_threshold=settings.tokens_lowbalance_threshold,
        discrepant=discrepant,
        minimum=minimum,
    )
    record_fleet_scan(primary, settings, snapshot)
    return fired
