"""Alerts from the scheduler: a balance under a threshold, a negative balance, a new discrepancy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from core.domain.models import Frozen


class AlertKind(StrEnum):
    LOW_BALANCE = "low_balance"
    NEGATIVE = "negative"
    DISCREPANCY = "discrepancy"


class Alert(Frozen):
    """One user's crossing, told once: `value` is their balance (or largest discrepancy) at the time."""

    kind: AlertKind
    user_id: str
    threshold: int
    value: int
    email: str | None = None

    @property
    def label(self) -> str:
        return self.email or self.user_id


class FleetSnapshot(Frozen):
    """The fleet in numbers at one scan, as App Home shows it without scanning again."""

    scanned_at: datetime
    users: int | None
    negative: int
    low_balances: int
    low_threshold: int
    discrepant: int
    minimum: int


def lowest_crossings(crossed: list[tuple[str, int, int]]) -> list[Alert]:
    """(user, threshold, balance) crossings as one alert per user, for the lowest threshold crossed: a
    balance that drops from 12,000 to -50 at once is one negative-balance alert, not two."""
    lowest: dict[str, tuple[int, int]] = {}
    for user_id, threshold, balance in crossed:
        if user_id not in lowest or threshold < lowest[user_id][0]:
            lowest[user_id] = (threshold, balance)
    return [
        Alert(
            kind=AlertKind.NEGATIVE if threshold <= 0 else AlertKind.LOW_BALANCE,
            user_id=user_id,
            threshold=threshold,
            value=balance,
        )
        for user_id, (threshold, balance) in sorted(lowest.items(), key=lambda item: (item[1][1], item[0]))
    ]
