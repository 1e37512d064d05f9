"""Alerts fire once per crossing: `alerts` holds every crossing that has fired and not yet recovered, and
`fleet_scans` the fleet's numbers at each of the tick's scans (what App Home shows without scanning).

A row in `alerts` is the memory that a user has been told about: while it stands the same crossing never
alerts again; the tick deletes it when the user recovers, so the next crossing alerts anew.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f"""
        CREATE TABLE "{schema}".alerts (
            -- `balance` (under `threshold`; 0 is a negative balance) or `discrepancy` (threshold 0).
            kind text NOT NULL,
            threshold bigint NOT NULL,
            user_id text NOT NULL,
            -- The balance, or the largest discrepancy, when the alert fired.
            value numeric NOT NULL,
            fired_at timestamptz NOT NULL,
            -- The last scan that still found a discrepancy: older ones have recovered.
            seen_at timestamptz NOT NULL,
            PRIMARY KEY (kind, threshold, user_id)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE "{schema}".fleet_scans (
            id bigserial PRIMARY KEY,
            scanned_at timestamptz NOT NULL,
            users bigint NOT NULL,
            negative bigint NOT NULL,
            low_balances bigint NOT NULL,
            low_threshold bigint NOT NULL,
            discrepant bigint NOT NULL,
            minimum bigint NOT NULL
        )
        """
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".fleet_scans')
    op.execute(f'DROP TABLE IF EXISTS "{schema}".alerts')
