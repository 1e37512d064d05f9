"""The bot's own schema, kept apart from the product's tables: the base every later revision builds on.

core.store.migrate creates the schema before Alembic runs, since Alembic's version table lives in it.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    """Nothing to add: the schema exists by the time this runs."""


def downgrade(schema: str) -> None:
    op.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
