"""What the pictures show, as values: a user's days of usage and balance, and the fleet's digests over time.

Computed by core.services.charts in one snapshot (daily buckets in the database); drawn by bot.render.charts.
Days are UTC calendar days; every amount is an exact whole number of tokens.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from core.domain.models import Frozen, UserRef, Verdict


class UsageDay(Frozen):
    """One UTC day of a user's ledger (a day without rows is present, all zeros)."""

    day: date
    used: dict[str, int]
    """Successful consumption tokens per series label (`UsageChart.series`), absent labels meaning 0."""
    failed: int
    """Tokens of failed operations that day: never charged, shown apart."""
    granted: int
    """Tokens added by grants (and set by resets) that day."""
    deducted: int
    remaining: int
    """The ledger-derived remaining balance at the end of the day."""


class UsageChart(Frozen):
    """A user's usage and ledger-derived balance, day by day, ending at today (UTC)."""

    user: UserRef
    verdict: Verdict
    grouped_by: Literal["action", "model"]
    series: list[str]
    """Stacking order, largest first; "other" (the rest grouped) last when present."""
    days: list[UsageDay]
    current_remaining: int
    """The profile's remaining now: the line's last point is the ledger's, this is where the profile is."""
    expected_remaining: int


class DigestPoint(Frozen):
    """One stored digest of a channel, as the trend chart plots it."""

    at: datetime
    discrepant: int
    new: int
    resolved: int
    low_balances: int
    negative: int


class FleetTrend(Frozen):
    """The channel's stored digests (up to 90, oldest first) and the fleet's daily consumption."""

    channel: str
    digests: list[DigestPoint]
    consumption: list[tuple[date, int]]
    """Successful consumption tokens per UTC day over the digests' span (days without rows included)."""
