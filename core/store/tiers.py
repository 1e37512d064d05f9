"""Membership tiers and the tokens each grants: from TOKENS_TIER_GRANTS, or read from the product's tier table.

A tier is known by its key, the value the profile's tier column holds: the tier's name when tiers are
configured by name, its id when the column points into a table (TOKENS_TIER_TABLE). Read once per use
case, in its snapshot: a tier table is small, and its amounts change when the product's prices do.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.domain.tiers import Tiers
from core.settings import Settings
from core.store.product import ProductShape


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
