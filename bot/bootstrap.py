"""Wiring a running bot: settings, the database (real or embedded), migrations, the core service."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from core.store.embedded import start_embedded
from core.store.migrate import migrate
from demo.data import fill_empty_database

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or an embedded PostgreSQL filled with demo data the first time it starts."""
    if settings.database_url:
        return settings.database_url
    url = start_embedded(settings.tokens_data_dir / "pg")
    engine = make_engine(url, pool_size=1)
    try:
        summary = fill_empty_database(engine)
        if summary is not None:
            log.info("embedded database filled with demo data: %s users", summary.users)
    finally:
        engine.dispose()
    return url


def prepare_database(settings: Settings) -> str:
    """Resolve the database and bring the bot's schema up to date; done once, before serving."""
    url = database_url(settings)
    engine = make_engine(url, pool_size=1)
    try:
        migrate(engine, settings.tokens_schema)
    finally:
        engine.dispose()
    return url


def build_service(settings: Settings, url: str) -> TokensService:
    engine: Engine = make_engine(
        url,
        pool_size=settings.tokens_db_pool_size,
        statement_timeout_ms=settings.tokens_statement_timeout_ms,
    )
    # The replica gets its own small pool: it only ever serves fleet scans, a few at a time.
    read_url = settings.database_read_url
    read_engine = (
        make_engine(
            read_url,
            pool_size=2,
            application_name="tokens-bot-scans",
            statement_timeout_ms=settings.tokens_statement_timeout_ms,
        )
        if read_url
        else None
    )
    return TokensService(settings, engine, read_engine=read_engine)
