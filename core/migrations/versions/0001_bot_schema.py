"""The bot's own schema, kept apart from the product's tables."""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def downgrade(schema: str) -> None:
    op.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
