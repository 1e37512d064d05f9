"""Databases of their own for tests: created on the server under test, dropped when done."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.settings import to_sqlalchemy_url
from core.store.db import make_engine
from core.store.migrate import migrate
from demo.data import create_product_tables

SCHEMA = "tokens_bot"


def create_database(server_url: str, name: str) -> str:
    """Create an empty database on the server and return its plain postgresql:// URL."""
    admin = create_engine(to_sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(to_sqlalchemy_url(server_url)).set(database=name)
    return url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://", 1)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(to_sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def scratch_database(server_url: str, prefix: str, *, product_tables: bool = True) -> Iterator[str]:
    """A fresh, migrated database (with the empty product tables unless told otherwise), dropped afterwards.

    Tests that scan the whole fleet or load demo data need one: they must see only their own rows.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    engine = make_engine(url, pool_size=1)
    try:
        if product_tables:
            with engine.begin() as conn:
                create_product_tables(conn)
        migrate(engine, SCHEMA)
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        drop_database(server_url, name)
