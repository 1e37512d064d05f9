"""What each daily digest reported, in the bot's own schema, so the next one can say what is new."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select, text, update

from core.settings import Settings
from core.store.tables import digest_discrepancies, digests, in_bot_schema

_BATCH = 1_000
# Any fixed number works; two cron runs for one channel must not both count the same users as new.
_DIGEST_LOCK = 7_412_003


def lock_channel(primary: Connection, channel: str) -> None:
    """Until commit, the only digest being built for `channel`."""
    primary.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(:c))"), {"k": _DIGEST_LOCK, "c": channel})


def previous_digest(primary: Connection, settings: Settings, channel: str) -> RowMapping | None:
    """The last digest posted to `channel` (id, created_at): the one this digest is compared with."""
    return (
        primary.execute(
            select(digests.c.id, digests.c.created_at)
            .where(digests.c.channel == channel)
            .order_by(digests.c.id.desc())
            .limit(1),
            execution_options=in_bot_schema(settings),
        )
        .mappings()
        .first()
    )


def insert_digest(
    primary: Connection,
    settings: Settings,
    channel: str,
    at: datetime,
    minimum: int,
    low_balances: int,
    *,
    negative: int,
) -> int:
    """The digest's row; `negative` (balances below zero) is kept for the trend chart."""
    return int(
        primary.execute(
            insert(digests)
            .values(
                channel=channel,
                created_at=at,
                minimum=minimum,
                discrepant=0,
                low_balances=low_balances,
                negative=negative,
            )
            .returning(digests.c.id),
            execution_options=in_bot_schema(settings),
        ).scalar_one()
    )


def remember_discrepancies(
    primary: Connection, settings: Settings, digest_id: int, rows: Iterator[dict[str, Any]]
) -> None:
    """Every discrepant user of this digest, written a batch at a time as the scan streams them."""
    while chunk := [{"digest_id": digest_id, **row} for row in islice(rows, _BATCH)]:
        primary.execute(insert(digest_discrepancies), chunk, execution_options=in_bot_schema(settings))


def compare_with(
    primary: Connection, settings: Settings, digest_id: int, previous_id: int | None
) -> dict[str, int]:
    """Discrepant, deferred, new and resolved users of this digest against the previous one; stores the
    discrepant count on the digest."""
    schema = settings.tokens_schema
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
        update(digests).where(digests.c.id == digest_id).values(discrepant=counts["discrepant"]),
        execution_options=in_bot_schema(settings),
    )
    return {key: int(value) for key, value in counts.items()}


def largest(
    primary: Connection,
    settings: Settings,
    digest_id: int,
    previous_id: int | None,
    *,
    seen: bool,
    limit: int,
) -> list[str]:
    """The largest discrepancies of this digest that the previous one did (`seen`) or did not report.

    A user the previous digest only deferred was not reported to anyone, so is still new.
    """
    schema = settings.tokens_schema
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
        update(digests).where(digests.c.id == digest_id).values(message_ts=message_ts),
        execution_options=in_bot_schema(settings),
    )


def digest_history(primary: Connection, settings: Settings, channel: str, *, limit: int) -> list[RowMapping]:
    """The channel's last `limit` digests, oldest first, with their new and resolved users.

    New and resolved are counted from digest_discrepancies exactly as `compare_with` counted them when each
    digest was built (against the digest before it, which is why one more is read than shown), so they
    need no stored copy and are exact for digests older than migration 0005 too. `negative` was first
    stored by migration 0005: older digests have none and read as 0.
    """
    schema = settings.tokens_schema
    rows = primary.execute(
        text(
            f"""
            WITH recent AS (
                SELECT id, created_at, discrepant, low_balances, negative,
                       lag(id) OVER (ORDER BY id) AS previous_id
                FROM (SELECT * FROM "{schema}".digests WHERE channel = :c
                      ORDER BY id DESC LIMIT CAST(:limit AS integer) + 1) latest
            ),
            now AS (
                SELECT r.id AS digest_id, n.user_id, n.deferred
                FROM recent r JOIN "{schema}".digest_discrepancies n ON n.digest_id = r.id
            ),
            before AS (
                SELECT r.id AS digest_id, b.user_id
                FROM recent r JOIN "{schema}".digest_discrepancies b ON b.digest_id = r.previous_id
                WHERE NOT b.deferred
            ),
            new AS (
                SELECT n.digest_id, count(*) AS new FROM now n
                WHERE NOT n.deferred AND NOT EXISTS
                    (SELECT 1 FROM before b WHERE b.digest_id = n.digest_id AND b.user_id = n.user_id)
                GROUP BY n.digest_id
            ),
            resolved AS (
                SELECT b.digest_id, count(*) AS resolved FROM before b
                WHERE NOT EXISTS
                    (SELECT 1 FROM now n WHERE n.digest_id = b.digest_id AND n.user_id = b.user_id)
                GROUP BY b.digest_id
            )
            SELECT * FROM (
                SELECT r.id, r.created_at AS at, r.discrepant, r.low_balances,
                       coalesce(r.negative, 0) AS negative,
                       coalesce(new.new, 0) AS new, coalesce(resolved.resolved, 0) AS resolved
                FROM recent r
                LEFT JOIN new ON new.digest_id = r.id
                LEFT JOIN resolved ON resolved.digest_id = r.id
                ORDER BY r.id DESC LIMIT :limit
            ) shown
            ORDER BY id
            """
        ),
        {"c": channel, "limit": limit},
    )
    return list(rows.mappings())
