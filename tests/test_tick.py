"""`tokens-bot tick` in-process against real PostgreSQL, with Slack played by the loopback fake.

The clock is moved by editing the request's times in the database (requested_at, reminded_at,
expires_at), exactly what the passing of real hours would have done to them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.bootstrap import build_service
from bot.entrypoints import jobs
from bot.render.approvals import render_request
from bot.slack.delivery import web_client
from bot.slack.port import WebSlack
from core.domain.approvals import Person
from core.settings import Settings
from core.store.db import make_engine, unit_of_work
from core.store.reminders import try_lock_tick
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_user
from tests.support.slack_http import buttons, reply_text

APPROVER = "UTICKAPPROVER"


@pytest.fixture(scope="module")
def tick_url(server_url: str) -> Iterator[str]:
    """A database of its own: a tick works on every request in it, so other tests' requests stay out."""
    with scratch_database(server_url, "tokens_tick") as url:
        yield url


@pytest.fixture
def tick_engine(tick_url: str) -> Iterator[Engine]:
    engine = make_engine(tick_url, pool_size=2)
    # Every test starts with nothing pending, so each tick's summary counts only the test's own requests.
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {SCHEMA}.approval_requests SET status = 'cancelled' WHERE status = 'pending'")
        )
    yield engine
    engine.dispose()


@pytest.fixture
def tick_settings(tick_url: str, fake_slack: FakeSlack) -> Settings:
    """A channel and a requester of their own per test, so the fake Slack's record tells tests apart."""
    suffix = uuid.uuid4().hex[:8].upper()
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=tick_url,
        slack_bot_token="xoxb-test-token",
        slack_api_url=fake_slack.api_url,
        tokens_admins=[f"UREQ{suffix}", APPROVER],
        tokens_approvals_channel=f"CTICK{suffix}",
        tokens_remind_after_hours=4,
    )


def requester(settings: Settings) -> str:
    return settings.tokens_admins[0]


def channel(settings: Settings) -> str:
    assert settings.tokens_approvals_channel
    return settings.tokens_approvals_channel


def ask(settings: Settings, engine: Engine, reason: str, *, post: bool = True) -> tuple[int, str | None]:
    """A pending +5,000 grant, its approval message posted and attached the way `/tokens adjust` does it."""
    email = f"tick-{uuid.uuid4().hex[:8]}@example.com"
    with engine.begin() as conn:
        add_user(conn, remaining=600_000, email=email)
    service = build_service(settings, str(settings.database_url))
    try:
        request = service.request_adjustment(
            Person(slack_id=requester(settings), name="Ada Admin"), email, 5_000, reason
        )
        ts = None
        if post:
            ts = WebSlack(web_client(settings), settings).post(channel(settings), render_request(request))
            assert ts is not None
            service.attach_message(request.id, channel(settings), ts)
    finally:
        service.engine.dispose()
    return request.id, ts


def age(engine: Engine, request_id: int, **hours: float) -> None:
    """Move the clock for one request: each named time goes back this many hours."""
    with engine.begin() as conn:
        for column, back in hours.items():
            conn.execute(
                text(
                    f"UPDATE {SCHEMA}.approval_requests SET {column} = {column} - make_interval(secs => :s)"
                    " WHERE id = :id"
                ),
                {"s": back * 3600, "id": request_id},
            )


def row(engine: Engine, request_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text(f"SELECT * FROM {SCHEMA}.approval_requests WHERE id = :id"), {"id": request_id})
            .mappings()
            .one()
        )


def ours(fake_slack: FakeSlack, settings: Settings, since: int) -> list[Recorded]:
    """Web API calls since `since` that went to this test's channel or to its requester."""
    return [
        c
        for c in fake_slack.calls[since:]
        if c.path.startswith("/api/chat.")
        and c.body.get("channel") in (channel(settings), requester(settings))
    ]


def reminders(calls: list[Recorded], ts: str) -> list[Recorded]:
    return [c for c in calls if c.method == "chat.postMessage" and c.body.get("thread_ts") == ts]


def tick(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    assert jobs.tick(settings) == 0
    return capsys.readouterr().out.strip()


def test_a_waiting_request_is_reminded_in_its_thread_once_per_interval(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reminded once it has waited 4 hours, then not again until 4 hours after that reminder."""
    start = len(fake_slack.calls)
    number, ts = ask(tick_settings, tick_engine, "refund for the outage")
    unposted, _ = ask(tick_settings, tick_engine, "never posted", post=False)
    assert ts is not None
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"

    age(tick_engine, number, requested_at=5)
    age(tick_engine, unposted, requested_at=5)
    assert tick(tick_settings, capsys) == "tick: 0 expired, 1 reminded"
    [reminder] = reminders(ours(fake_slack, tick_settings, start), ts)
    assert reminder.body["channel"] == channel(tick_settings)
    shown = reply_text(reminder.body)
    for fact in (
        f"request #{number}",
        "+5,000 tokens",
        "refund for the outage",
        "waited 5 h",
        "other than the requester",
    ):
        assert fact in shown, fact
    assert f"<@{APPROVER}>" in shown and f"<@{requester(tick_settings)}>" not in shown
    reminded_at = row(tick_engine, number)["reminded_at"]
    assert reminded_at is not None and row(tick_engine, unposted)["reminded_at"] is None

    for _ in range(3):
        assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"
    age(tick_engine, number, reminded_at=3)  # three hours since the reminder: not yet
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"
    age(tick_engine, number, reminded_at=1.5)  # four and a half: due again
    assert tick(tick_settings, capsys) == "tick: 0 expired, 1 reminded"
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"
    assert len(reminders(ours(fake_slack, tick_settings, start), ts)) == 2
    assert row(tick_engine, number)["status"] == "pending"
    # Nothing but the two reminders (and the approval message itself) went to the channel or the requester.
    assert len(ours(fake_slack, tick_settings, start)) == 3


def test_reminders_off_at_zero_hours(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tick_settings.model_copy(update={"tokens_remind_after_hours": 0})
    number, _ = ask(settings, tick_engine, "no reminders wanted")
    start = len(fake_slack.calls)
    age(tick_engine, number, requested_at=100)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    assert ours(fake_slack, settings, start) == [] and row(tick_engine, number)["reminded_at"] is None


def test_an_overdue_request_is_expired_its_message_updated_and_requester_told_once(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    number, ts = ask(tick_settings, tick_engine, "too late")
    start = len(fake_slack.calls)
    age(tick_engine, number, requested_at=30, expires_at=25)
    assert tick(tick_settings, capsys) == "tick: 1 expired, 0 reminded"
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"

    calls = ours(fake_slack, tick_settings, start)
    [update] = [c for c in calls if c.method == "chat.update"]
    assert update.body["ts"] == ts and "Expired" in reply_text(update.body) and not buttons(update.body)
    [dm] = [c for c in calls if c.body.get("channel") == requester(tick_settings)]
    assert f"#{number} " in dm.body["text"] and "Expired" in reply_text(dm.body)
    assert len(calls) == 2, "an expired request is not reminded as well"
    assert row(tick_engine, number)["status"] == "expired"
    with tick_engine.connect() as conn:
        events = conn.execute(
            text(f"SELECT event, actor FROM {SCHEMA}.audit_log WHERE request_id = :id ORDER BY id"),
            {"id": number},
        ).all()
    assert [tuple(e) for e in events] == [("requested", requester(tick_settings)), ("expired", "tokens-bot")]


def test_two_ticks_at_once_do_the_work_once(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ticks started together: one expiry, one message update, one DM and one reminder in all."""
    overdue, overdue_ts = ask(tick_settings, tick_engine, "overdue")
    waiting, waiting_ts = ask(tick_settings, tick_engine, "waiting")
    assert overdue_ts and waiting_ts
    start = len(fake_slack.calls)
    age(tick_engine, overdue, requested_at=30, expires_at=25)
    age(tick_engine, waiting, requested_at=5)
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def run() -> None:
        barrier.wait()
        codes.append(jobs.tick(tick_settings))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [0, 0]
    calls = ours(fake_slack, tick_settings, start)
    assert len([c for c in calls if c.method == "chat.update" and c.body["ts"] == overdue_ts]) == 1
    assert len([c for c in calls if c.body.get("channel") == requester(tick_settings)]) == 1
    assert len(reminders(calls, waiting_ts)) == 1
    assert len(calls) == 3
    out = capsys.readouterr().out
    # Either the second tick found the lock taken, or it came after the first committed and found nothing.
    assert "tick: 1 expired, 1 reminded" in out
    assert "tick skipped: another tick is running" in out or "tick: 0 expired, 0 reminded" in out


def test_a_tick_skips_while_another_holds_the_lock(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The advisory lock: a tick that finds it taken does nothing, says so and exits 0."""
    number, _ = ask(tick_settings, tick_engine, "overdue while locked")
    age(tick_engine, number, requested_at=30, expires_at=25)
    start = len(fake_slack.calls)
    with unit_of_work(tick_engine) as holder:
        assert try_lock_tick(holder, tick_settings)
        assert tick(tick_settings, capsys) == "tick skipped: another tick is running"
        assert (
            row(tick_engine, number)["status"] == "pending" and ours(fake_slack, tick_settings, start) == []
        )
    assert tick(tick_settings, capsys) == "tick: 1 expired, 0 reminded"


def test_a_tick_with_nothing_due_posts_nothing(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    ask(tick_settings, tick_engine, "fresh")
    start = len(fake_slack.calls)
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"
    assert [c for c in fake_slack.calls[start:] if c.path.startswith("/api/chat.")] == []


def test_a_reminder_keeps_mentions_in_the_reason_inert(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    number, ts = ask(tick_settings, tick_engine, "urgent <!channel> <@U999> <https://evil.example|click>")
    assert ts is not None
    start = len(fake_slack.calls)
    age(tick_engine, number, requested_at=26)
    assert tick(tick_settings, capsys) == "tick: 0 expired, 1 reminded"
    [reminder] = reminders(ours(fake_slack, tick_settings, start), ts)
    sent = json.dumps([reminder.body["text"], reminder.body["blocks"]])
    assert "&lt;!channel&gt;" in sent and "&lt;@U999&gt;" in sent
    assert "<!channel>" not in sent and "<@U999>" not in sent and "<https://evil" not in sent
    assert "waited 1 day 2 h" in reply_text(reminder.body)


def test_a_reminder_slack_refused_is_not_repeated_before_the_interval(
    tick_settings: Settings, tick_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reminder stays marked when Slack refuses it: the next minute's tick does not post it again."""
    number, ts = ask(tick_settings, tick_engine, "slack is down")
    assert ts is not None
    age(tick_engine, number, requested_at=5)
    start = len(fake_slack.calls)
    fake_slack.fail("chat.postMessage", 400)
    assert (
        tick(tick_settings, capsys)
        == "tick: 0 expired, 0 reminded, 1 reminders not posted (Slack refused them)"
    )
    assert tick(tick_settings, capsys) == "tick: 0 expired, 0 reminded"
    assert row(tick_engine, number)["reminded_at"] is not None
    assert [c.status for c in reminders(ours(fake_slack, tick_settings, start), ts)] == [400]


def test_tick_needs_a_bot_token(tick_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert jobs.tick(tick_settings.model_copy(update={"slack_bot_token": None})) == 2
    assert "needs SLACK_BOT_TOKEN" in capsys.readouterr().err
