"""Maintained per-user ledger totals, so fleet scans read the rows since the last fold instead of the ledger.

`ledger_rollups` holds, per user, the scan's sums over the ledger rows whose created_at is at or before
`rollup_state.watermark` (and those with no usable time); `rollup_hours` counts those rows per hour of the
last hours, so a fold notices rows inserted late into hours it already folded (core.store.rollups).
`rollup_state.config` names the action types and tier amounts the sums were folded under: totals
folded under other settings are not used. Sums are numeric: exact at any size.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f"""
        CREATE TABLE "{schema}".ledger_rollups (
            user_id text PRIMARY KEY,
            ledger_rows numeric NOT NULL,
            failed_rows numeric NOT NULL,
            failed_tokens numeric NOT NULL,
            calculated_used numeric NOT NULL,
            calculated_cents numeric NOT NULL,
            first_grant_key text COLLATE "C",
            logged_amounts numeric[] NOT NULL,
            has_reset boolean NOT NULL,
            reset_tokens numeric,
            reset_at timestamptz,
            reset_action text,
            counted_used numeric NOT NULL,
            all_grants numeric NOT NULL,
            admin_deductions numeric NOT NULL
        )
    """)
    op.execute(f"""
        CREATE TABLE "{schema}".rollup_hours (
            hour timestamptz PRIMARY KEY,
            ledger_rows bigint NOT NULL
        )
    """)
    op.execute(f"""
        CREATE TABLE "{schema}".rollup_state (
            id smallint PRIMARY KEY CHECK (id = 1),
            watermark timestamptz NOT NULL,
            config text NOT NULL,
            folded_at timestamptz NOT NULL,
            full_at timestamptz NOT NULL
        )
    """)


def downgrade(schema: str) -> None:
    for table in ("rollup_state", "rollup_hours", "ledger_rollups"):
        op.execute(f'DROP TABLE IF EXISTS "{schema}".{table}')
