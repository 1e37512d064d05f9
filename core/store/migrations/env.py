"""Alembic environment: runs on the connection core.store.migrate hands over, inside its lock."""

from __future__ import annotations

from alembic import context

config = context.config
schema = config.attributes["schema"]
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    version_table_schema=schema,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations(schema=schema)
