"""Reading whole core reports in tests: every page of a paged list, and a digest with nothing in it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.domain.reports import DigestReport, FleetTotals, LowBalanceReport


def all_rows(fetch: Callable[[int], Any]) -> list[Any]:
    """Every row of a paged core report, `fetch(page)` returning each page in turn."""
    rows, page = [], 1
    while True:
        report = fetch(page)
        rows += report.rows
        if not report.page.has_next:
            return rows
        page += 1


def quiet_digest(
    low: LowBalanceReport, totals: FleetTotals, *, generated_at: datetime, previous_at: datetime | None = None
) -> DigestReport:
    """A digest with low balances and totals but no discrepancy, for tests of how one is drawn."""
    return DigestReport(
        channel="CDIGEST",
        generated_at=generated_at,
        previous_at=previous_at,
        totals=totals,
        low=low,
        minimum=100,
        discrepant=0,
        deferred=0,
        new=0,
        unresolved=0,
        resolved=0,
        new_rows=[],
        unresolved_rows=[],
    )
