"""Each digest remembers how many balances were negative, so the trend chart can plot it over time.

Only `negative` is stored: new and resolved users are computed exactly from digest_discrepancies against
the previous digest (core.store.digests.digest_history), as the digest itself computed them, so they
need no copy. Digests stored before this revision have no count (NULL), which the chart shows as 0.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".digests ADD COLUMN negative bigint')


def downgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".digests DROP COLUMN IF EXISTS negative')
