"""The daily digest: the fleet scans, compared with what the previous digest in the channel reported."""

from __future__ import annotations

from itertools import islice

from sqlalchemy import Connection, text

from core.domain.reports import DigestReport
from core.settings import Settings
from core.store.fleet import fleet_totals, low_balances, read_discrepancies, stream_discrepancies
from core.store.product import ProductShape

_BATCH = 1_000
# Any fixed number works; two cron runs for one channel must not both count the same users as new.
_DIGEST_LOCK = 7_412_003


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
    schema = settings.tokens_schema
    primary.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(:c))"), {"k": _DIGEST_LOCK, "c": channel})
    previous = primary.execute(
        text(f'SELECT id, created_at FROM "{schema}".digests WHERE channel = :c ORDER BY id DESC LIMIT 1'),
        {"c": channel},
    ).first()
    previous_id = previous.id if previous else None
    generated_at = reader.execute(text("SELECT now()")).scalar_one()
    low = low_balances(reader, shape, settings, threshold=settings.tokens_lowbalance_threshold, page=1)
    minimum = settings.tokens_scan_threshold
    digest_id = primary.execute(
        text(
            f'INSERT INTO "{schema}".digests (channel, created_at, minimum, discrepant, low_balances)'
            " VALUES (:c, :at, :m, 0, :low) RETURNING id"
        ),
        {"c": channel, "at": generated_at, "m": minimum, "low": low.total},
    ).scalar_one()
    insert = text(
        f'INSERT INTO "{schema}".digest_discrepancies'
        " (digest_id, user_id, worst, used_discrepancy, remaining_discrepancy, deferred)"
        " VALUES (:d, :user_id, :worst, :used_discrepancy, :remaining_discrepancy, :deferred)"
    )
    rows = stream_discrepancies(reader, shape, settings, minimum=minimum, batch=_BATCH)
    while chunk := [{"d": digest_id, **row} for row in islice(rows, _BATCH)]:
        primary.execute(insert, chunk)
    counts = (
        primary.execute(
            text(
                f"""
            WITH now AS (SELECT * FROM "{schema}".digest_discrepancies WHERE digest_id = :d),
                 before AS (SELECT * FROM "{schema}".digest_discrepancies WHERE digest_id = :p AND NOT deferred)
            SELECT count(*) FILTER (WHERE NOT n.deferred) AS discrepant,
                   count(*) FILTER (WHERE n.deferred) AS deferred,
                   count(*) FILTER (WHERE NOT n.deferred AND NOT EXISTS
                       (SELECT 1 FROM before b WHERE b.user_id = n.user_id)) AS new,
                   (SELECT count(*) FROM before b WHERE NOT EXISTS
                       (SELECT 1 FROM now x WHERE x.user_id = b.user_id)) AS resolved
            FROM now n
            """
            ),
            {"d": digest_id, "p": previous_id},
        )
        .mappings()
        .one()
    )
    primary.execute(
        text(f'UPDATE "{schema}".digests SET discrepant = :n WHERE id = :d'),
        {"n": counts["discrepant"], "d": digest_id},
    )
    new_ids, unresolved_ids = (
        _largest(primary, schema, digest_id, previous_id, seen=seen, limit=shown) for seen in (False, True)
    )
    discrepant, new = int(counts["discrepant"]), int(counts["new"])
    report = DigestReport(
        channel=channel,
        generated_at=generated_at,
        previous_at=previous.created_at if previous else None,
        totals=fleet_totals(reader, shape, settings),
        low=low,
        minimum=minimum,
        discrepant=discrepant,
        deferred=int(counts["deferred"]),
        new=new,
        unresolved=discrepant - new,
        resolved=int(counts["resolved"]),
        new_rows=read_discrepancies(reader, shape, settings, new_ids),
        unresolved_rows=read_discrepancies(reader, shape, settings, unresolved_ids),
    )
    return report, int(digest_id)


def _largest(
    primary: Connection, schema: str, digest_id: int, previous_id: int | None, *, seen: bool, limit: int
) -> list[str]:
    """The largest discrepancies of this digest that the previous one did (`seen`) or did not report.

    A user the previous digest only deferred was not reported to anyone, so is still new.
    """
    rows = primary.execute(
        text(
            f"""
            SELECT n.user_id FROM "{schema}".digest_discrepancies n
            WHERE n.digest_id = :d AND NOT n.deferred
              AND {"" if seen else "NOT"} EXISTS (
                  SELECT 1 FROM "{schema}".digest_discrepancies b
                  WHERE b.digest_id = :p AND b.user_id = n.user_id AND NOT b.deferred)
            ORDER BY n.worst DESC, n.user_id LIMIT :limit
            """
        ),
        {"d": digest_id, "p": previous_id, "limit": limit},
    )
    return [row.user_id for row in rows]


def record_posted(primary: Connection, settings: Settings, digest_id: int, message_ts: str | None) -> None:
    primary.execute(
        text(f'UPDATE "{settings.tokens_schema}".digests SET message_ts = :ts WHERE id = :d'),
        {"ts": message_ts, "d": digest_id},
    )
