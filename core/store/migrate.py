"""Applying the bot's own schema migrations (Alembic), safely from any number of replicas at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed number works; it only has to be the same in every replica.
_MIGRATION_LOCK = 7_412_001


def alembic_config(schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["schema"] = schema
    return config


def migrate(engine: Engine, schema: str) -> None:
    """Bring the bot's schema to the newest version; an advisory lock serialises concurrent starts."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        # Alembic keeps its version table in the schema, so it must exist first. A least-privilege role
        # owns an existing schema but may not CREATE in the database, which even IF NOT EXISTS checks.
        if conn.execute(text("SELECT to_regnamespace(:s)"), {"s": f'"{schema}"'}).scalar() is None:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        config = alembic_config(schema)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current_revision(engine: Engine, schema: str) -> str | None:
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".alembic_version'}).scalar()
        if exists is None:
            return None
        return conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()
