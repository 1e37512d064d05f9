"""Text is never trusted: markup in reasons, Slack names, emails, ledger names and errors reaches Slack inert.

Slack reads `<!channel>`, `<!here>`, `<@U…>` and `<https://…|label>` in mrkdwn (and in a message's
`text`, which notifications show) as pings, mentions and disguised links. Every such text here comes
from a person or the product's database, travels the real path (signed HTTP into `tokens-bot serve`,
real PostgreSQL, the fake Slack recording what the bot sends) and must arrive escaped, with the bot's
own code blocks still closed.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy import text as sql

from bot.entrypoints.console import run_console
from bot.render.common import (
    MAX_FALLBACK_TEXT,
    MAX_SECTION_TEXT,
    Reply,
    clip,
    code,
    escape,
    section_json,
    unescape,
)
from bot.render.fleet import render_digest, render_lowbalance, render_top
from core.domain.models import Page, UserRef
from core.domain.reports import FleetTotals, LowBalanceReport, LowBalanceRow, TopReport, TopRow
from core.services.service import TokensService
from core.settings import Settings
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user
from tests.support.reports import quiet_digest
from tests.support.slack_http import SlackClient, ask, buttons

CHANNEL = "CAPPROVALS"
MARKUP = "<!channel> <!here> <@U123> <https://evil.example|click here to approve> ``` & done"
# The only live markup the bot itself writes in these messages: its admins' mentions and the channel.
OWN_MARKUP = re.compile(r"<@UADMIN[12]>|<#CAPPROVALS>")
LIVE_MARKUP = ("<!channel>", "<!here>", "<@U123", "<https://")


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """The message's `text` and every mrkdwn text in its blocks (confirm dialogs included)."""
    found = [str(message.get("text", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks", []))
    return found


def assert_inert(message: dict[str, Any]) -> None:
    """No markup but the bot's own, and every `&` the start of an entity Slack decodes back."""
    for text in mrkdwn_texts(message):
        for live in LIVE_MARKUP:
            assert live not in text, (live, text)
        rest = OWN_MARKUP.sub("", text)
        assert "<" not in rest and ">" not in rest, text
        assert not re.search(r"&(?!(?:amp|lt|gt);)", text), text


def code_blocks_closed(message: dict[str, Any]) -> list[str]:
    """The texts holding the bot's code tables (opened on a line of their own), each with its fences
    paired. Backticks in free text (a reason, an email) are only formatting: escaped, they link nothing."""
    coded = [t for t in mrkdwn_texts(message) if "\n```" in t]
    for text in coded:
        assert text.count("```") % 2 == 0, text
    return coded


@pytest.fixture
def hostile_names(fake_slack: FakeSlack) -> Iterator[None]:
    """Both admins' Slack display names carry markup for this test; the session's fake gets them back."""
    saved = {k: fake_slack.users.get(k) for k in ("UADMIN1", "UADMIN2")}
    fake_slack.users["UADMIN1"] = {"name": "Ada <!channel> <@U123>"}
    fake_slack.users["UADMIN2"] = {"name": "Bea <https://evil.example|boss> & <!here>"}
    yield
    for key, value in saved.items():
        if value is None:
            fake_slack.users.pop(key, None)
        else:
            fake_slack.users[key] = value


@pytest.fixture
def hostile_user(engine: Engine) -> str:
    """A profile whose email, action names, model names, errors and metadata all carry markup."""
    email = f"a<!here>`x`<@U123><https://evil.example|y>```{uuid.uuid4().hex[:8]}@evil.example"
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000, used=9_000, email=email)
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
        for i in range(3):
            add_usage(
                conn,
                user,
                tokens=3_000,
                action="<!channel>```evil`",
                model="<@U123>`m",
                success=i != 0,
                error="<https://evil.example|retry here> ``` <!here> & co" if i == 0 else None,
                metadata={"request_id": "<!channel>", "note": MARKUP},
                seconds=60 * (i + 1),
            )
    return str(user)


def posted(fake_slack: FakeSlack, number: int, **match: str) -> list[Recorded]:
    return fake_slack.wait_for(
        lambda c: (
            c.method in ("chat.postMessage", "chat.update")
            and f"#{number}" in c.body.get("text", "")
            and all(c.body.get(k) == v for k, v in match.items())
        )
    )


def test_markup_from_people_and_the_database_reaches_every_slack_message_inert(
    slack: SlackClient, fake_slack: FakeSlack, hostile_names: None, hostile_user: str
) -> None:
    """The check reply, the approval message, its updates, the threaded reconciliation, the requester's DMs,
    the clicker's replies and core's refusals carry no live mention, ping or link from any of these texts,
    and the check's code tables stay closed however many backticks the ledger holds."""
    check = ask(slack, fake_slack, f"check {hostile_user}")
    assert_inert(check)
    tables = code_blocks_closed(check)
    assert len(tables) == 2 and all(t.count("```") == 2 for t in tables)
    assert (
        "&lt;!channel&gt;ˋˋˋevilˋ" in tables[0] and "&lt;https://evil.example|retry here&gt; ˋˋˋ" in tables[1]
    )

    # A reason Slack sent with should_escape, as it sends `@channel` and a disguised link.
    created = ask(slack, fake_slack, f"adjust {hostile_user} +5k refund {MARKUP}")
    assert_inert(created)
    number = int(re.search(r"request #(\d+)", created["text"]).group(1))  # type: ignore[union-attr]
    [message] = posted(fake_slack, number, channel=CHANNEL)
    assert_inert(message.body)
    assert "refund &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt;" in str(message.body["blocks"])

    rejected = ask(slack, fake_slack, f"reject {number} no {MARKUP}", user="UADMIN2")
    assert_inert(rejected)
    [update] = posted(fake_slack, number, channel=CHANNEL, ts=message.response["ts"])
    [dm] = posted(fake_slack, number, channel="UADMIN1")
    for sent in (update.body, dm.body):
        assert_inert(sent)
        assert "Rejected" in str(sent) and "no &lt;!channel&gt;" in str(sent)

    second = ask(slack, fake_slack, f"adjust {hostile_user} +1k goodwill <!here>")
    number = int(re.search(r"request #(\d+)", second["text"]).group(1))  # type: ignore[union-attr]
    [message] = posted(fake_slack, number, channel=CHANNEL)
    approve = buttons(message.body)["approval_approve"]
    for _ in range(2):  # the second click is core's refusal, which names the approver
        result, name = slack.click("approval_approve", approve, user="UADMIN2", channel=CHANNEL)
        assert result.status == 200
        [reply] = fake_slack.responses(name)
        assert_inert(reply)
    assert "already approved by Bea &lt;https://evil.example|boss&gt; &amp; &lt;!here&gt;" in reply["text"]
    [update] = posted(fake_slack, number, channel=CHANNEL, ts=message.response["ts"])
    [thread] = fake_slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.body.get("thread_ts") == message.response["ts"]
    )
    [dm] = posted(fake_slack, number, channel="UADMIN1")
    for sent in (update.body, thread.body, dm.body):
        assert_inert(sent)
        code_blocks_closed(sent)


def test_a_reason_is_stored_as_typed_whatever_words_and_entities_it_holds(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine, hostile_user: str
) -> None:
    """Slack escapes `&`, `<` and `>` in command text; the bot stores the reason as the person typed it
    (and escapes it once where shown). A reason holding the word "payload", which Bolt alone would take for
    an interactive payload and read as empty, is a command like any other."""
    created = ask(slack, fake_slack, f"adjust {hostile_user} +2k fix payload bug &amp; refund &lt;3")
    number = int(re.search(r"request #(\d+)", created["text"]).group(1))  # type: ignore[union-attr]
    [message] = posted(fake_slack, number, channel=CHANNEL)
    assert "fix payload bug &amp; refund &lt;3" in str(message.body["blocks"])
    with engine.connect() as conn:
        stored = conn.execute(
            sql(f"SELECT reason FROM {SCHEMA}.approval_requests WHERE id = :n"), {"n": number}
        ).scalar_one()
    assert stored == "fix payload bug & refund <3"


def test_core_refusals_that_echo_what_was_typed_are_escaped(
    slack: SlackClient, fake_slack: FakeSlack, hostile_user: str
) -> None:
    """Usage errors and refusals quote the command back; the quote is inert, whatever it holds."""
    commands = [
        "frobnicate<!channel>",
        "check <!here>",
        "check <https://evil.example|ada@example.com>",
        f"check {hostile_user} <!channel>",
        f"adjust {hostile_user} lots<@U123> please",
        f"reconcile {hostile_user} <!here>",
        "reject 99999999 <!channel>",
        "cancel <!channel>",
        "top <!here>",
    ]
    for command in commands:
        assert_inert(ask(slack, fake_slack, command))


def test_the_console_shows_escaped_text_as_it_was_typed(
    settings: Settings, engine: Engine, hostile_user: str
) -> None:
    """The console renders the same blocks as text: data reads as stored (only backticks inside the
    tables are swapped), with no entity left showing."""
    lines = iter([f"/tokens check {hostile_user}", "/tokens check <!here>", "quit"])
    out = io.StringIO()
    run_console(TokensService(settings, engine), "UADMIN1", read=lambda _prompt: next(lines), out=out)
    text = out.getvalue()
    assert "<!channel>ˋˋˋevilˋ" in text and "<https://evil.example|retry here> ˋˋˋ <!here> & co" in text
    assert "&lt;" not in text and "&amp;" not in text and "&gt;" not in text


def test_fleet_lists_and_the_digest_escape_every_label() -> None:
    """Low balances, top usage and the digest name users by email: each arrives inert."""
    label = UserRef(user_id="<!channel>", email=f"<!here>{MARKUP}@evil.example")
    page = Page(number=1, count=1)
    low = LowBalanceReport(
        threshold=10_000,
        total=1,
        negative=1,
        burn_window_days=7,
        rows=[LowBalanceRow(user=label, remaining=-5, used=5, recent_used=5, burn_window_days=7)],
        offset=0,
        page=page,
    )
    top = TopReport(
        requested=1,
        users=1,
        rows=[TopRow(user=label, used=5, cost=Decimal(1), remaining=0)],
        offset=0,
        page=page,
    )
    digest = quiet_digest(
        low,
        FleetTotals(users=1, remaining=0, used=5, cost=Decimal(1), negative=1),
        generated_at=datetime(2026, 5, 3, tzinfo=UTC),
        previous_at=None,
    )
    for reply in (render_lowbalance(low), render_top(top), render_digest(digest)):
        assert_inert(reply.as_kwargs())


@given(st.text())
def test_escaping_makes_any_text_inert_and_loses_nothing(text: str) -> None:
    """Escaped, any text has no `<` or `>` and no `&` that is not an entity, and unescaping gives it back;
    in code it has no backtick either. Clipped, it never ends inside an entity."""
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert not re.search(r"&(?!(?:amp|lt|gt);)", escaped)
    assert unescape(escaped) == text
    assert "`" not in code(text) and "<" not in code(text)
    for limit in (3, 10, 50):
        clipped = clip(escaped, limit)
        assert len(clipped) <= limit or len(escaped) <= limit
        assert not re.search(r"&(?!(?:amp|lt|gt);)", clipped)


@given(st.text(min_size=1), st.integers(min_value=0, max_value=MAX_SECTION_TEXT * 2))
def test_a_section_cut_to_slacks_limit_keeps_its_code_block_closed(text: str, padding: int) -> None:
    """However long the code content, the section fits Slack's limit and its fences stay paired."""
    markdown = "*Title* " + "x" * padding + "\n```" + code(text * 200) + "```"
    clipped = section_json(markdown)["text"]["text"]
    assert len(clipped) <= MAX_SECTION_TEXT
    assert clipped.count("```") % 2 == 0
    assert len(Reply(text=markdown * 20).as_kwargs()["text"]) <= MAX_FALLBACK_TEXT
