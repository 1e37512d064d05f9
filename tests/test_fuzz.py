"""Hostile input at every subcommand: each gets a handled reply, nothing escapes, no SQL is built from text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event

from bot.commands import PARSERS
from bot.render.common import MAX_BLOCKS, MAX_SECTION_TEXT
from bot.routes import reply_to_command
from bot.slack.console import ConsoleSlack
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.ledger import add_usage, add_user

HOSTILE = [
    "'; DROP TABLE token_usage; --",
    '" OR 1=1 --',
    "$$; SELECT pg_sleep(10); $$",
    "<@U024BE7LH>",
    "<!channel>",
    "<#C024BE7LH|ops>",
    "<mailto:a@b.co|a@b.co>",
    "<mailto:a'--@b.co|x>",
    "a\x00b@example.com",
    "\x00",
    "1e309",
    "NaN",
    "-inf",
    "-0",
    "0x10",
    "1.5M",
    "1.5000001M",
    "99999999999999999999999999999999999999k",
    "+-5",
    "50,00,0",
    "٣٤٥",
    "１２３",
    "%s %(x)s {0}",
    "\\",
    "ada@example.com",
    "00000000-0000-0000-0000-000000000000",
    "x" * 10_240,
]
words = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=80),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)


@pytest.fixture(scope="module")
def watched(database_url: str) -> Iterator[tuple[TokensService, list[str]]]:
    """A service whose engine records every SQL statement it sends, to prove no text is spliced in."""
    engine: Engine = make_engine(database_url, pool_size=2)
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    settings_ = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        tokens_admins=["UADMIN1", "UADMIN2"],
        tokens_approvals_channel="CAPPROVALS",
    )
    with engine.begin() as conn:
        user = add_user(conn, remaining=100_000, email="ada@example.com")
        add_usage(conn, user, tokens=100_000, action="admin_grant", model=None)
    yield TokensService(settings_, engine), statements
    engine.dispose()


@example(subcommand="check", args=["a\x00b@example.com"])
@example(subcommand="adjust", args=["ada@example.com", "+5k", "reason\x00with NUL"])
@example(subcommand="adjust", args=["ada@example.com", "+5k", "x" * 10_240])
@example(subcommand="reconcile", args=["ada@example.com", "99999999999999999999999"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subcommand=st.sampled_from([*sorted(PARSERS), "", "CHECK", "Top", "nonsense"]),
    args=st.lists(words, max_size=4),
)
def test_every_subcommand_answers_hostile_text_with_a_handled_reply(
    watched: tuple[TokensService, list[str]], subcommand: str, args: list[str]
) -> None:
    """Unicode, huge numbers, injections, mentions, NULs and 10 kB strings get a friendly reply, never a crash."""
    service, statements = watched
    statements.clear()
    text = " ".join([subcommand, *args])
    reply = reply_to_command(service, "UADMIN1", text, slack=ConsoleSlack(lambda banner, posted: None))
    assert reply.text.strip()
    assert "Something went wrong" not in reply.text, (text[:200], reply.text)
    rendered = reply.as_kwargs()["blocks"]
    assert len(rendered) <= MAX_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT for b in rendered)
    for word in args:
        if len(word) >= 6 and not word.isalnum():
            assert not any(word in sql for sql in statements), f"{word!r} was spliced into SQL"
