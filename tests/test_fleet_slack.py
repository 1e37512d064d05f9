"""Fleet lists and the digest over real HTTP: signed commands and clicks into `tokens-bot serve`, fake Slack."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from bot.entrypoints import jobs
from bot.listeners._progress import respond_in_time
from bot.render.common import message
from core.settings import Settings
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import scratch_database
from tests.support.fake_slack import FakeSlack
from tests.support.fleet_data import craft_fleet
from tests.support.slack_http import SlackClient, ask, reply_text


@pytest.fixture(scope="module")
def fleet(server_url: str) -> Iterator[tuple[str, dict[str, uuid.UUID]]]:
    with scratch_database(server_url, "tokens_fleet") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            users = craft_fleet(conn)
        engine.dispose()
        yield url, users


@pytest.fixture(scope="module")
def fleet_slack(
    fleet: tuple[str, dict[str, uuid.UUID]], fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlackClient]:
    """A bot of its own on the crafted fleet, paging two rows at a time so paging is exercised."""
    env = bot_env(fleet[0], fake_slack.api_url, TOKENS_PAGE_SIZE="2", TOKENS_RATE_LIMIT_PER_MINUTE="1000")
    process = BotProcess(env, tmp_path_factory.mktemp("fleet-bot") / "bot.log")
    yield SlackClient(process.url, SIGNING_SECRET, fake_slack.url)
    process.stop()


def buttons(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in body["blocks"]:
        if block.get("accessory", {}).get("type") == "button":
            found.append(block["accessory"])
        found += [e for e in block.get("elements", []) if e.get("type") == "button"]
    return found


def test_each_list_over_http_with_totals_order_and_check_buttons(
    fleet_slack: SlackClient, fake_slack: FakeSlack
) -> None:
    """lowbalance, discrepancies and top answer with the total, the right order and a Check button per row."""
    low = reply_text(ask(fleet_slack, fake_slack, "lowbalance"))
    assert "*3* users under 10,000 tokens (1 negative)" in low and "page 1 of 2" in low
    assert low.index("negative@fleet.example") < low.index("before_tracking@fleet.example")
    assert "NEGATIVE" in low and "last 7 days" in low

    body = ask(fleet_slack, fake_slack, "discrepancies")
    text_ = reply_text(body)
    assert "*4* users with a used or remaining discrepancy over 100" in text_
    assert text_.index("unlogged@fleet.example") < text_.index("before_tracking@fleet.example")
    assert "Grant never logged (600,000)" in text_ and "+600,000" in text_
    rows = [b["action_id"] for b in buttons(body) if b["action_id"] != "fix_propose_batch"]
    assert rows == ["open_check", "open_check", "discrepancies_page"]

    top = reply_text(ask(fleet_slack, fake_slack, "top 3"))
    assert "heavy@fleet.example" in top and "$90.00" in top and "the 3 highest of *12* users" in top


def test_bounds_and_bad_numbers_get_clear_replies(fleet_slack: SlackClient, fake_slack: FakeSlack) -> None:
    """top 0, top 1000, negative and non-numeric thresholds each say what is allowed."""
    cases = {
        "top 0": "between 1 and 100 users; you asked for 0",
        "top 1000": "between 1 and 100 users; you asked for 1,000",
        "lowbalance -5": "threshold cannot be negative",
        "discrepancies -1": "minimum discrepancy cannot be negative",
        "lowbalance lots": "`lots` is not an amount of tokens",
        "top five": "`five` is not an amount of tokens",
        "discrepancies 1 2": "takes at most one number",
    }
    for command, expected in cases.items():
        assert expected in reply_text(ask(fleet_slack, fake_slack, command)), command
    assert "users under 25,000 tokens" in reply_text(ask(fleet_slack, fake_slack, "lowbalance 25k"))


def test_paging_across_pages_and_opening_a_check(fleet_slack: SlackClient, fake_slack: FakeSlack) -> None:
    """Next and Previous replace the list in place; Check opens the user's check as a new message."""
    first = ask(fleet_slack, fake_slack, "discrepancies")
    [next_button] = [b for b in buttons(first) if b["action_id"] == "discrepancies_page"]
    result, name = fleet_slack.click("discrepancies_page", next_button["value"])
    assert result.status == 200
    [second] = fake_slack.responses(name)
    assert second["replace_original"] is True
    text_ = reply_text(second)
    assert "page 2 of 2" in text_ and "failed@fleet.example" in text_ and "deducted@fleet.example" in text_
    assert "*3.*" in text_ and "unlogged@fleet.example" not in text_
    assert [b["text"]["text"] for b in buttons(second) if b["action_id"] == "discrepancies_page"] == [
        ":arrow_left: Previous"
    ]

    [check_button, *_] = [b for b in buttons(second) if b["action_id"] == "open_check"]
    result, name = fleet_slack.click("open_check", check_button["value"])
    [check] = fake_slack.responses(name)
    assert check["replace_original"] is False and check["response_type"] == "ephemeral"
    assert "failed@fleet.example" in reply_text(check) and "Failed operations charged" in reply_text(check)


def test_ack_is_immediate(fleet_slack: SlackClient, fake_slack: FakeSlack) -> None:
    """Slack gets its 200 before the scan runs: acks stay far below Slack's 3-second limit."""
    timings = []
    for command in ("discrepancies", "lowbalance", "top 100") * 3:
        result, name = fleet_slack.command(command)
        fake_slack.responses(name)
        timings.append(result.seconds)
    assert max(timings) < 0.5, timings


def test_working_note_then_reply_in_its_place() -> None:
    """A reply slower than the note delay gets a working note first, then replaces it; a fast one does not."""
    sent: list[dict[str, Any]] = []
    lock = threading.Lock()

    def respond(**kwargs: Any) -> None:
        with lock:
            sent.append(kwargs)

    def slow() -> Any:
        time.sleep(0.3)
        return message("done")

    respond_in_time(respond, slow, in_place=False, after=0.05)
    assert [s["text"] for s in sent] == [sent[0]["text"], "done"] and "Working" in sent[0]["text"]
    assert [s["replace_original"] for s in sent] == [False, True]
    sent.clear()
    respond_in_time(respond, lambda: message("quick"), in_place=False, after=5)
    assert [(s["text"], s["replace_original"]) for s in sent] == [("quick", False)]


def test_digest_reports_what_is_new_since_the_previous_run(
    fleet: tuple[str, dict[str, uuid.UUID]], fake_slack: FakeSlack
) -> None:
    """Two digests: the second names only the newly broken user as new, and counts the one fixed meanwhile."""
    url, users = fleet
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        slack_bot_token="xoxb-test-token",
        slack_api_url=fake_slack.api_url,
    )
    channel = f"CDIGEST{uuid.uuid4().hex[:6].upper()}"

    def posted(count: int) -> list[dict[str, Any]]:
        calls = fake_slack.wait_for(
            lambda c: c.method == "chat.postMessage" and c.body.get("channel") == channel, count=count
        )
        return [c.body for c in calls]

    # A dry run posts nothing and remembers nothing: the first real digest is still "the first".
    assert jobs.digest(settings, channel, dry_run=True) == 0
    assert jobs.digest(settings, channel, dry_run=False) == 0
    [first] = posted(1)
    text_ = reply_text(first)
    assert "first digest in this channel" in text_ and "*4 new*" in text_ and "Grant never logged" in text_
    assert "*3* users under 10,000 tokens" in text_

    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        # Fix `failed` (grant back the charged failures) and break `clean` (an unlogged 5,000 tokens).
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_used = vibe_assistant_tokens_used - 2500,"
                " vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining + 2500 WHERE user_id = :u"
            ),
            {"u": users["failed"]},
        )
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining"
                " + 5000 WHERE user_id = :u"
            ),
            {"u": users["clean"]},
        )
    engine.dispose()
    assert jobs.digest(settings, channel, dry_run=False) == 0
    second = reply_text(posted(2)[1])
    assert "changes since the previous digest" in second
    assert "*1 new*, 3 still unresolved, 1 resolved since last time" in second
    new_part = second[second.index("*New*") : second.index("Still unresolved")]
    assert "clean@fleet.example" in new_part and "unlogged@fleet.example" not in new_part
