"""The `/tokens chart` picture of one user, and the digest channel's trend: values for bot.render.charts.

Each is read in the caller's snapshot; the daily buckets are computed by PostgreSQL (core.store.usage_series),
so drawing a whale costs one index range scan, not a loop over their rows.
"""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from sqlalchemy import Connection

from core.domain.charts import DigestPoint, FleetTrend, UsageChart
from core.domain.errors import NothingToChartError
from core.services.check import judge_user
from core.settings import Settings
from core.store.columns import Columns
from core.store.digests import digest_history
from core.store.product import ProductShape
from core.store.tiers import load_tiers
from core.store.usage_series import fleet_consumption, usage_series
from core.store.users import find_user

TREND_DIGESTS = 90
"""Digests a trend shows: three months of daily digests, as many points as a picture can still label."""


def usage_chart(
    conn: Connection, shape: ProductShape, settings: Settings, user: UUID | str, days: int
) -> UsageChart:
    """A user's last `days` UTC days, with the verdict the check would give now (the same computation).

    The remaining line ends at the ledger's expected balance, and `current_remaining` is the profile's, so
    the picture shows the same gap the check reports. A user without a single ledger row is refused:
    there would be nothing to draw, and an empty picture reads as "no usage" rather than "no ledger".
    """
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    ref = find_user(conn, cols, user)
    balance, _, _, verdict = judge_user(conn, cols, settings, tiers, ref.user_id)
    if balance.ledger_rows == 0:
        raise NothingToChartError(
            f"{ref.label} has no rows in the token_usage ledger, so there is nothing to chart yet."
            " `/tokens check` shows their balance."
        )
    series = usage_series(conn, cols, ref.user_id, days, balance.expected_remaining)
    return UsageChart(
        user=ref,
        verdict=verdict,
        grouped_by=series.grouped_by,
        series=series.series,
        days=series.days,
        current_remaining=balance.current_remaining,
        expected_remaining=balance.expected_remaining,
    )


def fleet_trend(
    primary: Connection, reader: Connection, shape: ProductShape, settings: Settings, channel: str
) -> FleetTrend:
    """The channel's stored digests (from the bot's schema on `primary`) beside the fleet's daily
    consumption over the same UTC days (from the ledger on `reader`, a replica when there is one)."""
    points = [
        DigestPoint.model_validate(dict(row))
        for row in digest_history(primary, settings, channel, limit=TREND_DIGESTS)
    ]
    consumption = (
        fleet_consumption(
            reader,
            Columns.of(shape, settings),
            points[0].at.astimezone(UTC).date(),
            points[-1].at.astimezone(UTC).date(),
        )
        if points
        else []
    )
    return FleetTrend(channel=channel, digests=points, consumption=consumption)
