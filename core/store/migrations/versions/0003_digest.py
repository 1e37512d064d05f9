"""What each daily digest reported, so the next one can say exactly what is new since then."""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f"""
        CREATE TABLE "{schema}".digests (
            id bigserial PRIMARY KEY,
            channel text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            minimum bigint NOT NULL,
            discrepant integer NOT NULL,
            low_balances integer NOT NULL,
            message_ts text
        )
        """
    )
    op.execute(f'CREATE INDEX digests_channel_created_idx ON "{schema}".digests (channel, created_at DESC)')
    op.execute(
        f"""
        CREATE TABLE "{schema}".digest_discrepancies (
            digest_id bigint NOT NULL REFERENCES "{schema}".digests (id) ON DELETE CASCADE,
            user_id uuid NOT NULL,
            worst bigint NOT NULL,
            used_discrepancy bigint NOT NULL,
            remaining_discrepancy bigint NOT NULL,
            -- Active within the scan's grace window: counted, but neither new nor unresolved yet.
            deferred boolean NOT NULL,
            PRIMARY KEY (digest_id, user_id)
        )
        """
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".digest_discrepancies')
    op.execute(f'DROP TABLE IF EXISTS "{schema}".digests')
