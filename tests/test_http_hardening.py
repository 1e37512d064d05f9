"""Requests that did not prove they came from Slack, or that are malformed: refused with a 4xx, and the bot
makes no outgoing call for them, whatever URL their body names."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine

from bot.app import build_app
from core.services.service import TokensService
from core.settings import Settings
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient, reply_text

FORM = "application/x-www-form-urlencoded"


@dataclass
class Bot:
    """A bot with a fake Slack of its own, so "no outgoing call" can be asserted of every call it made."""

    process: BotProcess
    fake: FakeSlack
    slack: SlackClient

    def send(
        self, body: bytes, headers: dict[str, str], *, method: str = "POST", path: str = "/slack/events"
    ) -> int:
        """One raw request, headers exactly as given (Content-Length added when not), returning the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.process.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value.encode())  # as UTF-8, so a test can send any text
            if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def bot(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    fake = FakeSlack().start()
    process = BotProcess(
        bot_env(database_url, fake.api_url, WEB_CONCURRENCY="1"),
        tmp_path_factory.mktemp("http-hardening") / "bot.log",
    )
    yield Bot(process, fake, SlackClient(process.url, SIGNING_SECRET, fake.url))
    process.stop()
    fake.stop()


def command_body(fake: FakeSlack, *, text: str = "help") -> tuple[bytes, str]:
    """A slash command whose response_url is the fake's: any reply to it would be recorded."""
    name = uuid.uuid4().hex
    form = {"command": "/tokens", "text": text, "user_id": "UADMIN1", "response_url": fake.response_url(name)}
    return urlencode(form).encode(), name


def signed(body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Slack's headers for `body`, signed over its bytes (which need not be UTF-8)."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
        "Content-Type": FORM,
    }


def test_unverified_and_malformed_requests_get_4xx_and_make_no_outgoing_call(bot: Bot) -> None:
    """Every way a request can fail to prove itself, or be signed but malformed, is answered 400/401/404/405
    and never 500; the bot calls neither the response_url in the body nor the Web API for any of them.
    The control at the end (the same command, properly signed) shows such a call would have been seen."""
    body, _ = command_body(bot.fake)
    now = str(int(time.time()))
    good_signature = signed(body)["X-Slack-Signature"]
    unsigned = {
        "non-numeric timestamp": {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": good_signature},
        "timestamp in other digits": {"X-Slack-Request-Timestamp": "١٧٠٠٠٠٠٠٠٠", "X-Slack-Signature": "v0=0"},
        "float timestamp": {"X-Slack-Request-Timestamp": f"{now}.5", "X-Slack-Signature": good_signature},
        "huge timestamp": {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": good_signature},
        "negative timestamp": {"X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": good_signature},
        "no headers": {},
        "no signature": {"X-Slack-Request-Timestamp": now},
        "no timestamp": {"X-Slack-Signature": good_signature},
        "empty signature": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": ""},
        "signature of another secret": {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": SignatureVerifier("guess").generate_signature(timestamp=now, body=body),
        },
        "stale signature": signed(body, timestamp=int(time.time()) - 301),
        "signature not hex": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "z" * 64},
    }
    before = len(bot.fake.calls)
    names: list[str] = []
    for case, headers in unsigned.items():
        body, name = command_body(bot.fake)
        names.append(name)
        headers = {"Content-Type": FORM, **headers} if "Content-Type" not in headers else headers
        assert bot.send(body, headers) == 401, case

    def signed_but(body: bytes, **changes: str) -> dict[str, str]:
        return {**signed(body), **changes}

    command, name = command_body(bot.fake)
    names.append(name)
    malformed = {
        "form sent as JSON": (command, signed_but(command, **{"Content-Type": "application/json"})),
        "no content type": (command, {k: v for k, v in signed(command).items() if k != "Content-Type"}),
        "payload not JSON": (b"payload=%7Bnot-json", signed(b"payload=%7Bnot-json")),
        "payload a JSON list": (b"payload=%5B1%2C2%5D", signed(b"payload=%5B1%2C2%5D")),
        "payload a JSON string": (b"payload=%22x%22", signed(b"payload=%22x%22")),
        "body a broken JSON object": (b"{oops", signed(b"{oops")),
        "body not UTF-8": (b"command=%2Ftokens&text=\xff\xfe", signed(b"command=%2Ftokens&text=\xff\xfe")),
        "event a JSON list": (b"[1]", signed_but(b"[1]", **{"Content-Type": "application/json"})),
        "event of a type Slack never sends": (
            b'{"type": "block_actions"}',
            signed_but(b'{"type": "block_actions"}', **{"Content-Type": "application/json"}),
        ),
        "event not an object": (
            b'{"type": "event_callback", "event": "x"}',
            signed_but(b'{"type": "event_callback", "event": "x"}', **{"Content-Type": "application/json"}),
        ),
    }
    for case, (raw, headers) in malformed.items():
        assert bot.send(raw, headers) == 400, case
    assert bot.send(command, signed(command), method="GET") == 405
    assert bot.send(command, signed(command), path="/slack/other") == 404
    chunked = {**signed(command), "Transfer-Encoding": "chunked"}
    assert bot.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(command), command), chunked) == 400

    time.sleep(1.0)  # a reply would be sent after the ack: give it time to show
    assert bot.fake.calls[before:] == []
    assert "Traceback" not in bot.process.log()

    control, name = command_body(bot.fake)
    assert bot.send(control, signed(control)) == 200
    [reply] = bot.fake.responses(name)
    assert "/tokens check" in reply_text(reply)
    assert not any(c.path == f"/response/{n}" for c in bot.fake.calls for n in names)


def test_a_huge_body_is_refused_before_it_is_read(bot: Bot) -> None:
    """A body declared past 1 MiB gets 413 at once, though only a few bytes of it were ever sent; one sent
    whole, signed, gets 413 too. Neither reaches Bolt or Slack."""
    before = len(bot.fake.calls)
    with socket.create_connection(("127.0.0.1", bot.process.port), timeout=5) as sock:
        ts = str(int(time.time()))
        sock.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: " + FORM.encode() + b"\r\n"
            b"X-Slack-Request-Timestamp: " + ts.encode() + b"\r\nX-Slack-Signature: v0=" + b"0" * 64 + b"\r\n"
            b"Content-Length: 1073741824\r\n\r\ncommand=%2Ftokens"
        )
        started = time.monotonic()
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"413" and time.monotonic() - started < 3

    body, _ = command_body(bot.fake, text="help " + "x" * (1024 * 1024))
    assert bot.send(body, signed(body)) == 413
    time.sleep(0.5)
    assert bot.fake.calls[before:] == []


def test_a_signed_click_with_a_payload_of_the_wrong_shape_is_answered_without_a_500(bot: Bot) -> None:
    """Signed payloads Slack never sends (actions that are not objects, a user that is a string, a view
    that is text) get 400 before Bolt routes them, where they used to be a 500; a button value that is a
    number is answered as a damaged button. Never an apology, never a 500."""
    name = uuid.uuid4().hex
    click = {
        "type": "block_actions",
        "user": {"id": "UADMIN1"},
        "team": {"id": "T1"},
        "response_url": bot.fake.response_url(name),
        "actions": [{"type": "button", "action_id": "check_page", "value": 7, "block_id": "b"}],
    }
    odd = [
        {**click, "actions": ["check_page"]},
        {**click, "actions": "check_page"},
        {**click, "actions": []},
        {**click, "actions": [{"action_id": ["check_page"]}]},
        {**click, "user": "UADMIN1"},
        {**click, "user": {"id": 5}},
        {**click, "type": "view_submission", "view": "x"},
        {**click, "authorizations": ["x"]},
        {**click, "response_url": 5},
    ]
    before = len(bot.fake.calls)
    for payload in odd:
        raw = urlencode({"payload": json.dumps(payload)}).encode()
        assert bot.send(raw, signed(raw)) == 400, payload
    time.sleep(0.5)
    assert bot.fake.calls[before:] == []

    raw = urlencode({"payload": json.dumps(click)}).encode()
    assert bot.send(raw, signed(raw)) == 200
    [reply] = bot.fake.responses(name)
    assert "damaged" in reply_text(reply) and "Something went wrong" not in reply_text(reply)


def test_bolt_itself_never_answers_an_unverified_request_at_its_response_url(
    engine: Engine, database_url: str, fake_slack: FakeSlack
) -> None:
    """Behind the gate too: handed straight to the Bolt app, a request whose timestamp is not a number
    fails Bolt's own signature check with an exception, and the error handler, which used to apologise
    to the body's response_url, stays silent."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        slack_signing_secret="the-real-secret",
        slack_bot_token="xoxb-test",
        slack_api_url=fake_slack.api_url,
    )
    app = build_app(TokensService(settings, engine))
    name = uuid.uuid4().hex
    body = urlencode({"command": "/tokens", "text": "help", "response_url": fake_slack.response_url(name)})
    for timestamp in ("soon", "", "1e9"):
        headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": "v0=" + "0" * 64}
        assert app.dispatch(BoltRequest(body=body, headers=headers)).status in (401, 500)
    time.sleep(0.5)
    assert not [c for c in fake_slack.calls if c.path == f"/response/{name}"]
