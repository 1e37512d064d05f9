"""Slow work under pressure: a statement timeout ends a stuck query, SIGTERM lets a command in flight finish."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from bot.routes import reply_to_command
from bot.slack.console import ConsoleSlack
from core.domain.errors import QueryTimeoutError
from core.services.service import TokensService
from core.settings import Settings
from core.store.catalog import inspect_product
from core.store.db import make_engine, unit_of_work
from core.store.discrepancies import stream_discrepancies
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, reply_text

# The routes these tests drive never post: a console port that shows nothing.
NO_SLACK = ConsoleSlack(lambda banner, reply: None)


def _wait_until_blocked(engine: Engine, application_name: str = "tokens-bot") -> None:
    """Until a bot connection waits on a lock, so the test knows its command is really in flight."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"
                    " AND wait_event_type = 'Lock' AND datname = current_database()"
                ),
                {"a": application_name},
            ).scalar()
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the bot's query never started waiting on the lock")


def test_a_slow_query_ends_in_a_friendly_reply(settings: Settings, database_url: str, engine: Engine) -> None:
    """A check stuck behind a lock is cancelled at TOKENS_STATEMENT_TIMEOUT_MS and answered in plain words."""
    settings = settings.model_copy(update={"tokens_statement_timeout_ms": 300})
    slow_engine = make_engine(database_url, pool_size=1, statement_timeout_ms=300)
    service = TokensService(settings, slow_engine)
    with engine.begin() as conn:
        user = add_user(conn, remaining=10)
    try:
        with engine.connect() as locker:
            locker.execute(text("LOCK TABLE token_usage IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(QueryTimeoutError):
                service.check("UADMIN1", user)
            reply = reply_to_command(service, "UADMIN1", f"check {user}", slack=NO_SLACK)
            elapsed = time.monotonic() - started
            locker.rollback()
        assert "took longer than 0.3 s" in reply.text and "nothing was read or changed" in reply.text
        assert elapsed < 2
        # The timeout is per transaction: the same engine answers normally once the lock is gone.
        assert service.check("UADMIN1", user).balance.current_remaining == 10
    finally:
        slow_engine.dispose()


def test_sigterm_lets_a_command_in_flight_finish(
    database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM during a command whose query is blocked: the process waits, sends the reply, exits 0."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=31_337, used=5)
        add_usage(conn, user, tokens=5)
    fake = FakeSlack().start()
    bot = BotProcess(
        bot_env(database_url, fake.api_url, WEB_CONCURRENCY="1"), tmp_path_factory.mktemp("term") / "bot.log"
    )
    try:
        slack = SlackClient(bot.url, SIGNING_SECRET, fake.url)
        with engine.connect() as locker:
            locker.execute(text("LOCK TABLE token_usage IN ACCESS EXCLUSIVE MODE"))
            result, name = slack.command(f"check {user}")
            assert result.status == 200
            _wait_until_blocked(engine)
            bot.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert bot.process.poll() is None, "the bot exited with a command in flight"
            locker.rollback()
        replies = fake.wait_for(
            lambda c: c.path == f"/response/{name}" and "31,337" in reply_text(c.body), timeout=10
        )
        assert replies
        assert bot.process.wait(timeout=20) == 0
    finally:
        bot.stop()
        fake.stop()


def test_a_streamed_scan_stuck_behind_a_lock_raises_what_every_reply_turns_into_plain_words(
    settings: Settings, database_url: str, engine: Engine
) -> None:
    """The digest and the alerts stream their scan through the driver, not SQLAlchemy: a timeout there is
    still SQLAlchemy's OperationalError (which the services answer as QueryTimeoutError), and the
    connection serves the next unit of work."""
    slow_engine = make_engine(database_url, pool_size=1, statement_timeout_ms=300)
    with engine.begin() as conn:
        add_usage(conn, add_user(conn, remaining=10), tokens=500)
    with slow_engine.connect() as conn:
        shape = inspect_product(conn, settings)
    try:
        with engine.connect() as locker:
            locker.execute(text("LOCK TABLE token_usage IN ACCESS EXCLUSIVE MODE"))
            with (
                pytest.raises(OperationalError, match="statement timeout") as raised,
                unit_of_work(slow_engine, read_only=True) as conn,
            ):
                list(stream_discrepancies(conn, shape, settings, minimum=0))
            locker.rollback()
        # Raised while the rows were read (core.store.pipeline streams them), not by a statement before.
        assert any(frame.name == "_streamed" for frame in traceback.extract_tb(raised.value.__traceback__))
        with unit_of_work(slow_engine, read_only=True) as conn:
            assert len(list(stream_discrepancies(conn, shape, settings, minimum=0))) >= 1
    finally:
        slow_engine.dispose()


def test_a_stream_left_unread_refuses_other_statements_and_ends_with_its_unit_of_work(
    settings: Settings, engine: Engine
) -> None:
    """psycopg holds a connection's lock from a stream's first row to its last. A statement sent on it
    meanwhile raises rather than waits for that lock forever, and when the code reading the rows raises
    while it still holds them (as the digest's and the alerts' callees do), the unit of work closes the
    stream before its rollback instead of hanging on the same lock."""
    with engine.begin() as conn:
        for tokens in (500, 700):
            add_usage(conn, add_user(conn, remaining=10), tokens=tokens)
    with engine.connect() as conn:
        shape = inspect_product(conn, settings)
    raised: list[BaseException] = []

    def read_while_streaming(rows: Iterator[dict[str, object]], conn: Connection) -> None:
        for _ in rows:
            conn.execute(text("SELECT 1"))

    def scenario() -> None:
        try:
            with unit_of_work(engine, read_only=True) as conn:
                read_while_streaming(stream_discrepancies(conn, shape, settings, minimum=0, batch=1), conn)
        except RuntimeError as error:
            raised.append(error)

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the unit of work hung on a stream left unread"
    assert raised and "streaming" in str(raised[0])
    with unit_of_work(engine, read_only=True) as conn:
        assert len(list(stream_discrepancies(conn, shape, settings, minimum=0))) >= 2
