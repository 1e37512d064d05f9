"""What the product's database looks like: optional columns and tables the bot adapts to, read once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from core.settings import EmailSource, Settings

CONSUMPTION = "action_type NOT IN ('admin_grant', 'admin_deduct')"

# A ledger row tokens-bot wrote itself on approval (core.approvals records both keys): an approved extra
# grant, so never the initial grant, even when it equals a tier or an explicitly given amount. Written
# with unqualified columns, like CONSUMPTION, for queries over token_usage alone; false when metadata is
# NULL.
WRITTEN_BY_BOT = "coalesce(metadata->>'source' = 'slack' AND metadata->>'request_id' IS NOT NULL, false)"


@dataclass(frozen=True)
class ProductShape:
    """Facts about the product schema that vary between deployments."""

    tier_column: str | None
    cost_scale: int
    email_source: EmailSource | None

    @property
    def tier_sql(self) -> str:
        """The tier of profile `p` as a SQL expression: NULL where the product has no tier column."""
        return f'p."{self.tier_column}"' if self.tier_column else "NULL::text"

    @property
    def email_table(self) -> str:
        """The quoted, schema-qualified email table; identifiers were validated by the settings."""
        assert self.email_source is not None
        src = self.email_source
        return f'"{src.schema_name}"."{src.table}"'


def inspect_product(conn: Connection, settings: Settings) -> ProductShape:
    """Read the optional parts of the product schema so queries can use them only where they exist."""
    columns = {
        row.column_name: row.numeric_scale
        for row in conn.execute(
            text(
                "SELECT column_name, numeric_scale FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = 'user_profiles'"
            )
        )
    }
    source = settings.email_source
    email_found = conn.execute(
        text(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = :s AND table_name = :t AND column_name IN (:c, :i)"
            " HAVING count(*) = 2"
        ),
        {"s": source.schema_name, "t": source.table, "c": source.column, "i": source.id_column},
    ).first()
    scale = columns.get("vibe_assistant_total_cost")
    return ProductShape(
        tier_column=settings.tokens_tier_column if settings.tokens_tier_column in columns else None,
        # An unconstrained numeric keeps every digit; cents/100 then needs at most 6 for 4-dp cents.
        cost_scale=scale if scale is not None else 6,
        email_source=source if email_found else None,
    )
