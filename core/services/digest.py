"""The daily digest: the fleet scans, compared with what the previous digest in the channel reported."""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.domain.reports import DigestReport
from core.settings import Settings
from core.store import digests
from core.store.discrepancies import read_discrepancies, scan_ledger, stream_discrepancies
from core.store.fleet import fleet_totals, low_balances
from core.store.product import ProductShape


def build_digest(
    primary: Connection,
    reader: Connection,
    shape: ProductShape,
    settings: Settings,
    channel: str,
    *,
    shown: int = 5,
) -> tuple[DigestReport, int]:
    """Scan on `reader`, remember every discrepant user on `primary`, and compare with the last digest.

    Nothing is committed here: the caller commits after the message is posted, so a digest that never
    reached the channel is not the "previous digest" of the next one.
    """
    digests.lock_channel(primary, channel)
    previous = digests.previous_digest(primary, settings, channel)
    previous_id = previous["id"] if previous else None
    generated_at = reader.execute(text("SELECT now()")).scalar_one()
    low = low_balances(reader, shape, settings, threshold=settings.tokens_lowbalance_threshold, page=1)
    minimum = settings.tokens_scan_threshold
    totals = fleet_totals(reader, shape, settings)
    digest_id = digests.insert_digest(
        primary, settings, channel, generated_at, minimum, low.total, negative=totals.negative
    )
    ledger = scan_ledger(reader, shape, settings)
    digests.remember_discrepancies(
        primary,
        settings,
        digest_id,
        stream_discrepancies(reader, shape, settings, minimum=minimum, ledger=ledger),
    )
    counts = digests.compare_with(primary, settings, digest_id, previous_id)
    new_ids, unresolved_ids = (
        digests.largest(primary, settings, digest_id, previous_id, seen=seen, limit=shown)
        for seen in (False, True)
    )
    discrepant, new = counts["discrepant"], counts["new"]
    report = DigestReport(
        channel=channel,
        generated_at=generated_at,
        previous_at=previous["created_at"] if previous else None,
        totals=totals,
        low=low,
        minimum=minimum,
        discrepant=discrepant,
        deferred=counts["deferred"],
        new=new,
        unresolved=discrepant - new,
        resolved=counts["resolved"],
        new_rows=read_discrepancies(reader, shape, settings, new_ids),
        unresolved_rows=read_discrepancies(reader, shape, settings, unresolved_ids),
        ledger=ledger,
    )
    return report, digest_id
