"""Each request remembers when approvers were last reminded of it, so `tokens-bot tick` (run every minute)
reminds at most once per TOKENS_REMIND_AFTER_HOURS, however many ticks and replicas run.

NULL means never reminded; rows from before this revision start that way, and are reminded at the
next tick if they have waited long enough.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".approval_requests ADD COLUMN reminded_at timestamptz')


def downgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".approval_requests DROP COLUMN IF EXISTS reminded_at')
