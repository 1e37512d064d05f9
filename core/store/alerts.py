"""Alert state in the bot's schema: which crossings have fired and not recovered, and the fleet scans.

Each crossing is a row keyed by (kind, threshold, user): inserting it is what fires the alert, so a row
that already stands (ON CONFLICT DO NOTHING) is a crossing already told, whatever number of ticks run;
deleting it on recovery is what lets the next crossing fire again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from core.domain.alerts import Alert, AlertKind, FleetSnapshot
from core.settings import Settings
from core.store.columns import REMAINING, Columns
from core.store.fleet import email_lookup
from core.store.product import ProductShape
from core.store.tables import digests, fleet_scans, in_bot_schema

_BATCH = 1_000


def balance_crossings(
    conn: Connection, shape: ProductShape, settings: Settings, now: datetime
) -> list[tuple[str, int, int]]:
    """Forget the balance crossings that recovered, then record the new ones: (user, threshold, balance).

    Only profiles under the highest threshold are read (the raw column's index narrows them first), and
    the standing alerts are compared with that set as a hash, so this stays cheap to run every minute.
    A threshold taken out of TOKENS_ALERT_THRESHOLDS counts as recovered.
    """
    cols, p, schema = Columns.of(shape, settings), "p", settings.tokens_schema
    remaining = cols.balance(p, REMAINING)
    raw = f"p.{REMAINING}"
    narrow = f"({raw} < :top OR {raw} IS NULL) AND" if cols.profiles.has(REMAINING) else ""
    thresholds = settings.alert_thresholds
    params: dict[str, Any] = {"thresholds": thresholds, "top": thresholds[0], "now": now}
    crossed = f"""
        SELECT m.user_id, k.t AS threshold, m.remaining
        FROM (
            SELECT p.user_id::text AS user_id, {remaining} AS remaining
            FROM {cols.current_profiles(p)} WHERE {narrow} {remaining} < :top
        ) m
        JOIN unnest(CAST(:thresholds AS bigint[])) AS k(t) ON m.remaining < k.t"""
    conn.execute(
        text(f"""
        DELETE FROM "{schema}".alerts a
        WHERE a.kind = 'balance' AND (a.user_id, a.threshold) NOT IN (SELECT user_id, threshold FROM ({crossed}) c)
        """),
        params,
    )
    rows = conn.execute(
        text(f"""
        INSERT INTO "{schema}".alerts (kind, threshold, user_id, value, fired_at, seen_at)
        SELECT 'balance', c.threshold, c.user_id, c.remaining, :now, :now FROM ({crossed}) c
        ON CONFLICT (kind, threshold, user_id) DO NOTHING
        RETURNING user_id, threshold, value
        """),
        params,
    )
    return [(row.user_id, int(row.threshold), int(row.value)) for row in rows]


def discrepancy_crossings(
    conn: Connection, settings: Settings, scanned: Iterator[dict[str, Any]], now: datetime
) -> tuple[list[Alert], int]:
    """Record a scan's discrepant users (stream_discrepancies' rows), a batch at a time: new ones fire,
    standing ones are marked seen, and those the scan no longer finds have recovered. Returns the new
    alerts and how many users are discrepant (deferred ones, maybe mid-write, are neither new nor gone)."""
    schema, fired, discrepant = settings.tokens_schema, [], 0
    while batch := list(islice(scanned, _BATCH)):
        settled = [row for row in batch if not row["deferred"]]
        discrepant += len(settled)
        if settled:
            # xmax is 0 on a row this statement inserted, and set on one it updated: only inserts fire.
            rows = conn.execute(
                text(f"""
                INSERT INTO "{schema}".alerts (kind, threshold, user_id, value, fired_at, seen_at)
                SELECT 'discrepancy', 0, x.u, x.w, :now, :now
                FROM unnest(CAST(:ids AS text[]), CAST(:worst AS numeric[])) AS x(u, w)
                ON CONFLICT (kind, threshold, user_id) DO UPDATE SET seen_at = excluded.seen_at
                RETURNING user_id, value, xmax = 0 AS inserted
                """),
                {"ids": [r["user_id"] for r in settled], "worst": [r["worst"] for r in settled], "now": now},
            )
            fired += [
                Alert(kind=AlertKind.DISCREPANCY, user_id=row.user_id, threshold=0, value=int(row.value))
                for row in rows
                if row.inserted
            ]
        deferred = [row["user_id"] for row in batch if row["deferred"]]
        if deferred:
            conn.execute(
                text(f"""
                UPDATE "{schema}".alerts SET seen_at = :now
                WHERE kind = 'discrepancy' AND user_id = ANY(CAST(:ids AS text[]))
                """),
                {"ids": deferred, "now": now},
            )
    conn.execute(
        text(f"""DELETE FROM "{schema}".alerts WHERE kind = 'discrepancy' AND seen_at < :now"""), {"now": now}
    )
    return fired, discrepant


def emails_of(
    conn: Connection, shape: ProductShape, settings: Settings, user_ids: list[str]
) -> dict[str, str]:
    """The emails of the alerted users that have one, by user id, for the alert message to name them by."""
    if not user_ids:
        return {}
    email, email_join = email_lookup(Columns.of(shape, settings), "pg")
    rows = conn.execute(
        text(f"SELECT pg.user_id, {email} FROM unnest(CAST(:ids AS text[])) AS pg(user_id) {email_join}"),
        {"ids": user_ids},
    )
    return {row.user_id: row.email for row in rows if row.email is not None}


def scan_due(conn: Connection, settings: Settings, now: datetime) -> bool:
    """Whether the last fleet scan is older than TOKENS_ALERT_SCAN_MINUTES (or there was none)."""
    last = conn.execute(
        select(func.max(fleet_scans.c.scanned_at)), execution_options=in_bot_schema(settings)
    ).scalar_one()
    return last is None or last <= now - timedelta(minutes=settings.tokens_alert_scan_minutes)


def record_fleet_scan(conn: Connection, settings: Settings, snapshot: FleetSnapshot) -> None:
    conn.execute(
        insert(fleet_scans).values(**snapshot.model_dump()), execution_options=in_bot_schema(settings)
    )


def latest_fleet_numbers(conn: Connection, settings: Settings) -> FleetSnapshot | None:
    """The newest of the tick's last fleet scan and the last digest: what is stored, never a new scan. A
    digest does not count users, so its snapshot leaves them unknown."""
    options = in_bot_schema(settings)
    scan = (
        conn.execute(
            select(fleet_scans).order_by(fleet_scans.c.scanned_at.desc()).limit(1), execution_options=options
        )
        .mappings()
        .first()
    )
    digest = (
        conn.execute(
            select(digests).order_by(digests.c.created_at.desc()).limit(1), execution_options=options
        )
        .mappings()
        .first()
    )
    if digest is not None and (scan is None or digest["created_at"] > scan["scanned_at"]):
        return FleetSnapshot(
            scanned_at=digest["created_at"],
            users=None,
            negative=digest["negative"] or 0,
            low_balances=digest["low_balances"],
            low_threshold=settings.tokens_lowbalance_threshold,
            discrepant=digest["discrepant"],
            minimum=digest["minimum"],
        )
    return (
        None if scan is None else FleetSnapshot.model_validate({k: v for k, v in scan.items() if k != "id"})
    )
