"""The finding signals of the largest discrepancies, kept between fleet scans (core.store.signal_cache).

Each user's signals are kept with the number of ledger rows they were counted over and the settings they
were counted under: an append-only ledger with the same number of rows holds the same rows.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f"""
        CREATE TABLE "{schema}".ledger_signals (
            user_id text PRIMARY KEY,
            ledger_rows numeric NOT NULL,
            config text NOT NULL,
            signals jsonb NOT NULL,
            counted_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".ledger_signals')
