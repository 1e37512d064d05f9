"""For any product database: user ids of any type, sums beyond bigint, and metadata stored as text.

Product user ids may be uuid, bigint or text, so the bot stores them as text; balances and
discrepancies may exceed bigint on numeric columns, so the bot's copies are numeric.
`jsonb_or_null` reads metadata a product keeps in a text column: invalid JSON counts as none. It catches
the cast's error, which needs a subtransaction, so it is PARALLEL UNSAFE: only a product that stores
metadata as text gives up parallel scans for it.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f"""
        ALTER TABLE "{schema}".approval_requests
            ALTER COLUMN user_id TYPE text USING user_id::text,
            ALTER COLUMN remaining_at_request TYPE numeric,
            ALTER COLUMN balance_before TYPE numeric,
            ALTER COLUMN balance_after TYPE numeric
        """
    )
    op.execute(
        f"""
        ALTER TABLE "{schema}".digest_discrepancies
            ALTER COLUMN user_id TYPE text USING user_id::text,
            ALTER COLUMN worst TYPE numeric,
            ALTER COLUMN used_discrepancy TYPE numeric,
            ALTER COLUMN remaining_discrepancy TYPE numeric
        """
    )
    op.execute(f'ALTER TABLE "{schema}".digests ALTER COLUMN low_balances TYPE bigint')
    op.execute(f'ALTER TABLE "{schema}".digests ALTER COLUMN discrepant TYPE bigint')
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".jsonb_or_null(document text) RETURNS jsonb
        LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE AS $$
        BEGIN
            IF document IS NULL OR btrim(document) = '' THEN
                RETURN NULL;
            END IF;
            RETURN document::jsonb;
        EXCEPTION WHEN others THEN
            RETURN NULL;
        END
        $$
        """
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP FUNCTION IF EXISTS "{schema}".jsonb_or_null(text)')
