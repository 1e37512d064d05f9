"""The local console and the command line, driven as a person would type them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator

from sqlalchemy import Engine

from bot.entrypoints.console import run_console
from core.services.service import TokensService
from core.settings import Settings
from tests.support.ledger import add_usage, add_user


def typed(*lines: str) -> Iterator[str]:
    yield from lines


def test_console_renders_replies_as_text_and_presses_buttons_by_number(
    settings: Settings, engine: Engine
) -> None:
    """Typing a slash command shows readable text; typing a button's number presses it; `as` switches user."""
    with engine.begin() as conn:
        user = add_user(conn, email="console-user@example.com")
        for i in range(25):
            add_usage(conn, user, tokens=100 + i, seconds=i * 60)
    lines = typed(
        "/tokens check console-user@example.com", "1", "as USTRANGER", f"/tokens check {user}", "quit"
    )
    out = io.StringIO()
    run_console(TokensService(settings, engine), "UADMIN1", read=lambda _prompt: next(lines), out=out)
    text = out.getvalue()
    assert "== Problem: console-user@example.com ==" in text
    assert "page 1 of 3" in text and "page 2 of 3" in text
    assert "[1] Next" in text and "[1] Previous" in text
    assert "00:24:00 ok" in text.split("page 1 of 3")[1]
    assert "You are now Slack user USTRANGER." in text
    assert text.rstrip().endswith("Ask an admin to add your Slack ID to TOKENS_VIEWERS.")


def test_demo_data_command_refuses_a_database_with_product_data(database_url: str, engine: Engine) -> None:
    """`tokens-bot demo-data` never mixes demo rows into a database that already has product data."""
    with engine.begin() as conn:
        add_user(conn)
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "demo-data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "already hold" in result.stderr and "--force" in result.stderr
    migrate = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0 and "up to date" in migrate.stdout
