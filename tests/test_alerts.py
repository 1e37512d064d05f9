"""Alerts from `tokens-bot tick` against real PostgreSQL, with Slack played by the loopback fake: once per
crossing, again only after recovery, one message however many, and once however many ticks run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from bot.bootstrap import build_service
from bot.entrypoints import jobs
from bot.scheduler import tick_once
from bot.slack.delivery import web_client
from bot.slack.port import WebSlack
from core.settings import Settings
from core.store.db import make_engine
from tests.support.bot_process import BotProcess, bot_env
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import reply_text


@pytest.fixture(scope="module")
def alerts_url(server_url: str) -> Iterator[str]:
    """A database of its own: alerts are about every user in it."""
    with scratch_database(server_url, "tokens_alerts") as url:
        yield url


@pytest.fixture
def alerts_engine(alerts_url: str) -> Iterator[Engine]:
    engine = make_engine(alerts_url, pool_size=2)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE token_usage, user_profiles, auth.users"))
        conn.execute(text(f"TRUNCATE {SCHEMA}.alerts, {SCHEMA}.fleet_scans"))
    yield engine
    engine.dispose()


@pytest.fixture
def alert_settings(alerts_url: str, fake_slack: FakeSlack) -> Settings:
    """An alerts channel of its own per test, so the fake Slack's record tells tests apart."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=alerts_url,
        slack_bot_token="xoxb-test-token",
        slack_api_url=fake_slack.api_url,
        tokens_admins=["UADMIN1"],
        tokens_alerts_channel=f"CALERTS{uuid.uuid4().hex[:8].upper()}",
        tokens_alert_thresholds=[10_000, 0],
    )


def posted(fake_slack: FakeSlack, settings: Settings) -> list[Recorded]:
    return [
        c
        for c in fake_slack.calls
        if c.method == "chat.postMessage" and c.body.get("channel") == settings.tokens_alerts_channel
    ]


def tick(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    assert jobs.tick(settings) == 0
    return capsys.readouterr().out.strip()


def granted(engine: Engine, tokens: int, email: str | None = None) -> str:
    """A user whose profile matches the ledger: one grant of `tokens`, nothing used yet."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=tokens, email=email)
        add_usage(conn, user, tokens=tokens, action="admin_grant", model=None)
    return user


def move(engine: Engine, user: str, delta: int) -> None:
    """What the product does (ledger row and cached balance together, dated well before the scan's grace
    window): usage for a negative delta, a grant for a positive one."""
    with engine.begin() as conn:
        if delta < 0:
            add_usage(conn, user, tokens=-delta)
        else:
            add_usage(conn, user, tokens=delta, action="admin_grant", model=None)
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining + :d,"
                " vibe_assistant_tokens_used = vibe_assistant_tokens_used + greatest(-:d, 0) WHERE user_id = :u"
            ),
            {"d": delta, "u": user},
        )


def miscount_used(engine: Engine, user: str, extra: int) -> None:
    """The profile counts `extra` more tokens used than the ledger holds: a discrepancy of that size."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_used = vibe_assistant_tokens_used + :x"
                " WHERE user_id = :u"
            ),
            {"x": extra, "u": user},
        )


def scan_again(engine: Engine) -> None:
    """Move the last fleet scan two hours back: the next tick is due to scan the ledger again."""
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {SCHEMA}.fleet_scans SET scanned_at = scanned_at - interval '2 hours'"))


def test_an_alert_fires_once_per_crossing_and_again_only_after_recovery(
    alert_settings: Settings, alerts_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under 10,000 alerts once (the user named by escaped email and id); lower still under it says nothing more until it goes negative; after a
    recovery the next fall alerts again. A discrepancy alerts at the scan that finds it, not at the next
    scans, and again after it was fixed and came back."""
    settings = alert_settings
    low, drifted = granted(alerts_engine, 50_000, "low&co@example.com"), granted(alerts_engine, 20_000)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"

    move(alerts_engine, low, -41_000)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded, 1 alerts"
    [first] = posted(fake_slack, settings)
    shown = reply_text(first.body)
    assert low in shown and "balance +9,000" in shown and "Balance under 10,000" in shown
    assert "low&amp;co@example.com" in shown and "low&co" not in shown
    assert drifted not in shown
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    move(alerts_engine, low, -1_000)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    move(alerts_engine, low, -8_005)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded, 1 alerts"
    assert "Negative balance" in reply_text(posted(fake_slack, settings)[-1].body)
    move(alerts_engine, low, 20_005)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    move(alerts_engine, low, -10_001)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded, 1 alerts"
    assert "balance +9,999" in reply_text(posted(fake_slack, settings)[-1].body)

    miscount_used(alerts_engine, drifted, 5_000)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"  # the last scan is recent
    scan_again(alerts_engine)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded, 1 alerts"
    shown = reply_text(posted(fake_slack, settings)[-1].body)
    assert "New discrepancy above 1,000 tokens" in shown and drifted in shown and "off by 5,000" in shown
    scan_again(alerts_engine)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    miscount_used(alerts_engine, drifted, -5_000)
    scan_again(alerts_engine)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded"
    miscount_used(alerts_engine, drifted, 3_000)
    scan_again(alerts_engine)
    assert tick(settings, capsys) == "tick: 0 expired, 0 reminded, 1 alerts"
    assert len(posted(fake_slack, settings)) == 5


def test_3000_simultaneous_crossings_make_one_summary_message(
    alert_settings: Settings, alerts_engine: Engine, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """3,000 users under a threshold at once: one message, the counts per kind, a few users named and the
    rest counted, within Slack's limits; the next tick says nothing."""
    # 1,000 negative balances (each within the problem threshold of its empty ledger) and 2,000 balances
    # of 5,000 that match their one grant.
    with alerts_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining, vibe_assistant_tokens_used,"
                " vibe_assistant_total_cost) SELECT gen_random_uuid(), CASE WHEN g <= 1000 THEN -g ELSE 5000 END,"
                " 0, 0 FROM generate_series(1, 3000) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO token_usage (user_id, action_type, tokens_used, created_at)"
                " SELECT user_id, 'admin_grant', 5000, '2026-01-01' FROM user_profiles"
                " WHERE vibe_assistant_tokens_remaining = 5000"
            )
        )
    assert tick(alert_settings, capsys) == "tick: 0 expired, 0 reminded, 3,000 alerts"
    [summary] = posted(fake_slack, alert_settings)
    shown = reply_text(summary.body)
    assert "3,000 new alerts" in summary.body["text"]
    assert "Negative balance* — 1,000 users" in shown and "Balance under 10,000* — 2,000 users" in shown
    assert "…and 985 more" in shown and "…and 1,985 more" in shown
    assert len(summary.body["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in summary.body["blocks"])
    assert tick(alert_settings, capsys) == "tick: 0 expired, 0 reminded"
    assert len(posted(fake_slack, alert_settings)) == 1


def test_two_ticks_at_once_alert_once(
    alert_settings: Settings, alerts_engine: Engine, fake_slack: FakeSlack
) -> None:
    """Two ticks started together, each with its own pool: the crossing is told once, by one of them."""
    with alerts_engine.begin() as conn:
        for _ in range(20):
            add_user(conn, remaining=-1)
    services = [build_service(alert_settings, str(alert_settings.database_url)) for _ in range(2)]
    slack = WebSlack(web_client(alert_settings), alert_settings)
    start = threading.Barrier(2)
    alerted: list[int] = []

    def run(index: int) -> None:
        start.wait()
        alerted.append(len(tick_once(services[index], slack)[0].alerts))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for service in services:
        service.engine.dispose()
    assert sorted(alerted) == [0, 20]
    [message] = posted(fake_slack, alert_settings)
    assert "20 new alerts" in message.body["text"]


def test_serve_runs_the_tick_in_one_worker_of_all_and_each_crossing_is_told_once(
    alert_settings: Settings,
    alerts_engine: Engine,
    alerts_url: str,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two `serve` processes of two workers each, ticking every second: one of the four leads, and each
    crossing reaches the alerts channel once."""
    channel = str(alert_settings.tokens_alerts_channel)
    env = bot_env(
        alerts_url,
        fake_slack.api_url,
        TOKENS_ALERTS_CHANNEL=channel,
        TOKENS_TICK_INTERVAL_SECONDS="1",
    )
    logs = tmp_path_factory.mktemp("serve-tick")
    replicas = [BotProcess(env, logs / f"bot{i}.log") for i in range(2)]
    try:
        first, second = granted(alerts_engine, 20_000), granted(alerts_engine, 20_000)
        move(alerts_engine, first, -25_000)
        fake_slack.wait_for(lambda c: c.body.get("channel") == channel, timeout=30)
        move(alerts_engine, second, -25_000)
        fake_slack.wait_for(lambda c: c.body.get("channel") == channel, count=2, timeout=30)
        led = sum(p.log().count("this process runs the scheduled tick") for p in replicas)
    finally:
        for process in replicas:
            process.stop()
    told = [reply_text(c.body) for c in posted(fake_slack, alert_settings)]
    assert first in told[0] and second not in told[0]
    assert [first in t for t in told].count(True) == 1 and [second in t for t in told].count(True) == 1
    assert led == 1


def test_the_home_tab_shows_the_newest_stored_numbers_and_never_scans(
    alert_settings: Settings, alerts_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a tick's scan the Home tab shows its numbers; a digest posted later wins (its users
    uncounted); a new negative balance changes nothing there until the next scan or digest."""
    service = build_service(alert_settings, str(alert_settings.database_url))
    try:
        granted(alerts_engine, 50_000)
        assert service.home("UADMIN1").fleet is None
        tick(alert_settings, capsys)
        scanned = service.home("UADMIN1").fleet
        assert scanned is not None and (scanned.users, scanned.negative, scanned.discrepant) == (1, 0, 0)
        with alerts_engine.begin() as conn:
            add_user(conn, remaining=-10)
        assert service.home("UADMIN1").fleet == scanned
        with alerts_engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {SCHEMA}.digests (channel, created_at, minimum, discrepant, low_balances,"
                    " negative) VALUES ('CDIGEST', now() + interval '1 minute', 100, 7, 8, 9)"
                )
            )
        digested = service.home("UADMIN1").fleet
        assert digested is not None
        assert (digested.users, digested.negative, digested.low_balances, digested.discrepant) == (
            None,
            9,
            8,
            7,
        )
        assert service.home("USTRANGER").fleet is None
    finally:
        with alerts_engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {SCHEMA}.digests WHERE channel = 'CDIGEST'"))
        service.engine.dispose()
