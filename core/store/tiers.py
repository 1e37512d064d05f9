"""Membership tiers and the tokens each grants: from TOKENS_TIER_GRANTS, or read from the product's tier table.

A tier is known by its key, the value the profile's tier column holds: the tier's name when tiers are
configured by name, its id when the column points into a table (TOKENS_TIER_TABLE). Read once per use
case, in its snapshot: a tier table is small, and its amounts change when the product's prices do.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.domain.models import Frozen
from core.settings import Settings
from core.store.product import ProductShape


class Tiers(Frozen):
    amounts: dict[str, int]
    """Tokens granted per tier key."""
    names: dict[str, str]
    """What a reply calls each tier key (the tier table's name column; the key itself otherwise)."""

    def name(self, key: str) -> str:
        return self.names.get(key, key)


def load_tiers(conn: Connection, shape: ProductShape, settings: Settings) -> Tiers:
    """The tier catalog for this snapshot; an amount that is unset or zero grants nothing and is left out."""
    table = shape.tier_table
    if table is None:
        grants = dict(settings.tokens_tier_grants)
        return Tiers(amounts=grants, names={key: key for key in grants})
    amount = ", ".join(f'nullif(t."{column}", 0)' for column in table.amounts)
    rows = conn.execute(
        text(
            f'SELECT t."{table.key}"::text AS key, t."{table.name}"::text AS name,'
            f" coalesce({amount})::numeric AS amount FROM {table.qualified} t"
        )
    ).all()
    return Tiers(
        amounts={row.key: int(row.amount) for row in rows if row.amount is not None},
        names={row.key: row.name or row.key for row in rows},
    )


def known_amounts(tiers: Tiers, shape: ProductShape) -> dict[str, int]:
    """Amounts a balance may hold without a ledger row, each with what a finding calls it: every tier's
    grant, and the profile's column default (products have started balances at 100 without logging it)."""
    known = {
        f"the {tiers.name(key)} tier grant": amount for key, amount in tiers.amounts.items() if amount > 0
    }
    default = shape.remaining_default
    if default is not None and default > 0:
        known.setdefault("the profile's default starting balance", default)
    return known
