"""When a fold last recounted the relooked hours (core.store.rollup_hours), so later folds can skip that
count until TOKENS_ROLLUP_RELOOK_EVERY_MINUTES have passed: it reads every row of those hours.

NULL (every state folded before this column existed) means a recount is due.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".rollup_state ADD COLUMN relooked_to timestamptz')


def downgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".rollup_state DROP COLUMN IF EXISTS relooked_to')
