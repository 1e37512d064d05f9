"""Membership tiers and the tokens each grants, as the core reasons about them (core.store.tiers reads them)."""

from __future__ import annotations

from core.domain.models import Frozen


class Tiers(Frozen):
    amounts: dict[str, int]
    """Tokens granted per tier key."""
    names: dict[str, str]
    """What a reply calls each tier key (the tier table's name column; the key itself otherwise)."""

    def name(self, key: str) -> str:
        return self.names.get(key, key)


def known_amounts(tiers: Tiers, default_balance: int | None) -> dict[str, int]:
    """Amounts a balance may hold without a ledger row, each with what a finding calls it: every tier's
    grant, and the profile's column default (products have started balances at 100 without logging it)."""
    known = {
        f"the {tiers.name(key)} tier grant": amount for key, amount in tiers.amounts.items() if amount > 0
    }
    if default_balance is not None and default_balance > 0:
        known.setdefault("the profile's default starting balance", default_balance)
    return known
