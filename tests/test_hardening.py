"""A deployed bot under attack and faults: replays, floods, a database that goes away, a Slack that fails."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bot.render.common import message
from bot.slack.audit import email_digest
from bot.slack.port import WebSlack
from core.settings import Settings
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, reply_text
from tests.support.tcp_proxy import TcpProxy

DB_PASSWORD = "db-password-5ecret-0451"
BOT_TOKEN = "xoxb-1111-2222-hardening-secret-token"
RATE_LIMIT = 5
SLACK_RETRIES = 3
# Each test acts as its own Slack user, so the rate limit counts only that test's commands.
VIEWERS = "UVIEWER,UREPLAY,UFLOOD,UOUTAGE,URETRY,UGIVEUP,UAUDIT"


@dataclass
class GuardedBot:
    """One single-worker bot (so its in-process replay cache and rate limit see every request), whose
    database connections pass through a proxy the tests can cut, and whose Slack is a fake of its own."""

    process: BotProcess
    fake: FakeSlack
    slack: SlackClient
    proxy: TcpProxy

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.process.url}/healthz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.process.log().splitlines() if line.strip()]

    def audited(self, slack_user: str) -> list[dict[str, Any]]:
        return [e for e in self.log_entries() if e.get("slack_user") == slack_user and "outcome" in e]


@pytest.fixture(scope="module")
def guarded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedBot]:
    proxy = TcpProxy.for_url(database_url)
    with_password = make_url(database_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    fake = FakeSlack().start()
    env = bot_env(
        proxy.url_through(with_password),
        fake.api_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        WEB_CONCURRENCY="1",
        TOKENS_VIEWERS=VIEWERS,
        TOKENS_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
        TOKENS_SLACK_TIMEOUT_SECONDS="1",
        TOKENS_SLACK_RETRIES=str(SLACK_RETRIES),
        TOKENS_SLACK_RETRY_SECONDS="0.05",
    )
    process = BotProcess(env, tmp_path_factory.mktemp("guarded") / "bot.log")
    yield GuardedBot(process, fake, SlackClient(process.url, SIGNING_SECRET, fake.url), proxy)
    process.stop()
    fake.stop()
    proxy.stop()


def ask(bot: GuardedBot, text: str, user: str, timeout: float = 10) -> dict[str, Any]:
    result, name = bot.slack.command(text, user=user)
    assert result.status == 200, result.body
    return bot.fake.responses(name, timeout=timeout)[-1]


def test_a_replayed_request_is_refused(guarded: GuardedBot) -> None:
    """The same signed request sent twice within the five-minute window is answered once, then 401."""
    name = uuid.uuid4().hex
    body = urlencode(
        {
            "command": "/tokens",
            "text": "help",
            "user_id": "UREPLAY",
            "response_url": guarded.fake.response_url(name),
        }
    ).encode()
    ts = int(time.time())
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=str(ts), body=body)
    first = guarded.slack.post(body, timestamp=ts, signature=signature)
    again = guarded.slack.post(body, timestamp=ts, signature=signature)
    assert (first.status, again.status) == (200, 401)
    guarded.fake.responses(name)
    time.sleep(0.3)
    assert len(guarded.fake.responses(name)) == 1


def test_commands_beyond_the_rate_limit_get_a_friendly_reply(guarded: GuardedBot) -> None:
    """Past TOKENS_RATE_LIMIT_PER_MINUTE a user's command is acked with a slow-down note and not run."""
    for _ in range(RATE_LIMIT):
        assert "/tokens check" in reply_text(ask(guarded, "help", "UFLOOD"))
    result, name = guarded.slack.command("help", user="UFLOOD")
    assert result.status == 200
    ack = json.loads(result.body)
    assert ack["response_type"] == "ephemeral" and "Slow down" in ack["text"]
    # Another person is not slowed down by the first one's flood.
    assert "/tokens check" in reply_text(ask(guarded, "help", "UREPLAY"))
    time.sleep(0.3)
    assert not [c for c in guarded.fake.calls if c.path == f"/response/{name}"]
    assert guarded.audited("UFLOOD")[-1]["outcome"] == "rate_limited"


def test_a_database_outage_is_reported_in_time_and_survived(guarded: GuardedBot, engine: Engine) -> None:
    """With the database cut off a check is told "database unavailable" within 3 s and /healthz says 503;
    once it is back, the same bot answers again without a restart."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=42_000, used=100)
        add_usage(conn, user, tokens=100)
    assert "42,000" in reply_text(ask(guarded, f"check {user}", "UOUTAGE"))

    guarded.proxy.cut()
    try:
        started = time.monotonic()
        body = ask(guarded, f"check {user}", "UOUTAGE")
        assert time.monotonic() - started < 3
        assert "database is unavailable" in reply_text(body)
        assert guarded.health() == (503, {"status": "unavailable", "database": "unreachable"})
    finally:
        guarded.proxy.restore()

    assert "42,000" in reply_text(ask(guarded, f"check {user}", "UOUTAGE"))
    assert guarded.health() == (200, {"status": "ok", "database": "ok"})


def test_replies_are_retried_through_429_500_and_a_hang(guarded: GuardedBot) -> None:
    """A response_url answering 429 (Retry-After 1), then 500, then hanging past the timeout still gets the
    reply on the fourth attempt, and the command behind it ran once."""
    name = uuid.uuid4().hex
    path = f"/response/{name}"
    guarded.fake.fail(path, 429, retry_after="1")
    guarded.fake.fail(path, 500)
    guarded.fake.stall(path, 0, 0, 2.5)
    started = time.monotonic()
    result, _ = guarded.slack.command("help", user="URETRY", response_name=name)
    assert result.status == 200
    attempts = guarded.fake.wait_for(lambda c: c.path == path, count=4, timeout=15)
    assert [c.status for c in attempts][:2] == [429, 500]
    assert "/tokens check" in reply_text(attempts[-1].body)
    assert time.monotonic() - started < 10
    assert [e["outcome"] for e in guarded.audited("URETRY")] == ["ok"]


def test_a_reply_slack_keeps_refusing_is_given_up_within_bounds(guarded: GuardedBot) -> None:
    """A response_url that only ever answers 500 is tried 1 + TOKENS_SLACK_RETRIES times, then left."""
    name = uuid.uuid4().hex
    path = f"/response/{name}"
    guarded.fake.fail(path, *[500] * 10)
    result, _ = guarded.slack.command("help", user="UGIVEUP", response_name=name)
    assert result.status == 200
    guarded.fake.wait_for(lambda c: c.path == path, count=1 + SLACK_RETRIES, timeout=10)
    time.sleep(1.5)
    assert len([c for c in guarded.fake.calls if c.path == path]) == 1 + SLACK_RETRIES
    assert "Slack refused a reply for good: HTTP 500" in guarded.process.log()


def test_every_command_is_audited_in_json_without_secrets_or_emails(
    guarded: GuardedBot, engine: Engine
) -> None:
    """Each command logs one JSON line (user, command, target, outcome, duration); no log line of the
    whole run (outage, retries and replays included) holds a secret or an email in clear."""
    email = "audited-person@example.com"
    with engine.begin() as conn:
        user = add_user(conn, remaining=7, email=email)
    ask(guarded, f"check {email}", "UAUDIT")
    ask(guarded, f"check {user}", "UAUDIT")
    ask(guarded, "check missing-person@example.com", "UAUDIT")
    ask(guarded, f"check {user}", "USTRANGER")

    by_email, by_id, missing = guarded.audited("UAUDIT")
    assert by_email["command"] == "check" and by_email["outcome"] == "ok"
    assert by_email["target_user"] == email_digest(email)
    assert by_id["target_user"] == str(user) and isinstance(by_id["duration_ms"], float)
    assert (missing["outcome"], missing["error"]) == ("refused", "UserNotFoundError")
    [stranger] = guarded.audited("USTRANGER")
    assert (stranger["outcome"], stranger["error"]) == ("refused", "NotAllowedError")

    log = guarded.process.log()
    assert all(isinstance(entry, dict) for entry in guarded.log_entries())  # every line is JSON
    for secret in (SIGNING_SECRET, BOT_TOKEN, DB_PASSWORD, email, "missing-person@example.com"):
        assert secret not in log


def test_an_approval_message_slack_never_answers_is_reported_and_never_posted_twice(
    guarded: GuardedBot, engine: Engine
) -> None:
    """chat.postMessage timing out after the request committed: one pending request, one post attempt (it may
    have been posted, so it is not sent again), and the requester is pointed at `/tokens requests`."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=10_000)

    def to_channel(call: Recorded) -> bool:
        return call.method == "chat.postMessage" and call.body.get("channel") == "CAPPROVALS"

    before = len([c for c in guarded.fake.calls if to_channel(c)])
    guarded.fake.stall("chat.postMessage", 2.5)
    reply = reply_text(ask(guarded, f"adjust {user} +5000 refund for the outage", "UADMIN1"))
    assert "posting to the approvals channel failed" in reply and "/tokens requests" in reply
    guarded.fake.wait_for(to_channel, count=before + 1)
    time.sleep(1.5)
    assert len([c for c in guarded.fake.calls if to_channel(c)]) == before + 1
    with engine.connect() as conn:
        requests = conn.execute(
            text(f"SELECT status, channel FROM {SCHEMA}.approval_requests WHERE user_id = :u"), {"u": user}
        ).all()
    assert [tuple(r) for r in requests] == [("pending", None)]


def test_the_slack_port_retries_a_timed_out_update_but_never_a_timed_out_post(settings: Settings) -> None:
    """Transport failures never raise out of the port: an update (idempotent) is sent again, a post is not."""
    fake = FakeSlack().start()
    try:
        tuned = settings.model_copy(update={"tokens_slack_retries": 2, "tokens_slack_retry_seconds": 0.05})
        slack = WebSlack(WebClient(token="xoxb-test", base_url=fake.api_url, timeout=1), tuned)
        fake.stall("chat.update", 1.5)
        assert slack.update("CAPPROVALS", "1.0", message("updated")) is True
        fake.stall("chat.postMessage", 1.5)
        assert slack.post("CAPPROVALS", message("posted")) is None
        fake.wait_for(lambda c: c.method == "chat.update", count=2)
        fake.wait_for(lambda c: c.method == "chat.postMessage")
        time.sleep(0.5)
        assert [c.method for c in fake.calls] == ["chat.update", "chat.update", "chat.postMessage"]
    finally:
        fake.stop()
