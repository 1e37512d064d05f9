"""Fixtures: a fresh real PostgreSQL database per test session, migrated, with the product tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.settings import Settings
from core.store.db import make_engine
from core.store.embedded import start_embedded
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import scratch_database
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient

ROOT = Path(__file__).resolve().parent.parent


def _server_url() -> str:
    """The PostgreSQL server under test: DATABASE_URL when set, else the embedded one."""
    return os.environ.get("DATABASE_URL") or start_embedded(ROOT / ".tokens-bot" / "test-pg")


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A database of its own for this test session, holding the product tables and the bot's schema."""
    with scratch_database(server_url, "tokens_bot_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        tokens_admins=["UADMIN1", "UADMIN2"],
        tokens_viewers=["UVIEWER"],
    )


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def bot(
    database_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BotProcess]:
    """The real bot serving HTTP, wired to this session's database and the fake Slack."""
    process = BotProcess(
        bot_env(database_url, fake_slack.api_url), tmp_path_factory.mktemp("bot") / "bot.log"
    )
    yield process
    process.stop()


@pytest.fixture(scope="session")
def slack(bot: BotProcess, fake_slack: FakeSlack) -> SlackClient:
    return SlackClient(bot.url, SIGNING_SECRET, fake_slack.url)
