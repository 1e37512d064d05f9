"""`/tokens check` over real HTTP: signed requests into `tokens-bot serve`, replies at a loopback fake Slack."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine
from sqlalchemy import text as sql

from tests.support.bot_process import SIGNING_SECRET
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, ask, reply_text


def test_check_reply_shows_verdict_discrepancies_findings_and_pages(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A signed /tokens check acks with 200 and posts an ephemeral report; Next shows the next page."""
    with engine.begin() as conn:
        user = add_user(
            conn, remaining=600_000 - 5_500 - 1_200, used=5_500 + 1_200, email="ops-check@example.com"
        )
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
        for i in range(22):
            add_usage(conn, user, tokens=250, seconds=60 * (i + 1))
        add_usage(conn, user, tokens=1_200, success=False, error="upstream 502", seconds=99_999)
    body = ask(slack, fake_slack, "check ops-check@example.com")
    assert body["response_type"] == "ephemeral"
    text = reply_text(body)
    assert "Problem" in text and "ops-check@example.com" in text
    assert "+1,200" in text and "Failed operations charged" in text and "upstream 502" in text
    assert "page 1 of 3" in text
    blocks = body["blocks"]
    assert len(blocks) <= 50  # type: ignore[arg-type]
    [paging] = [b for b in blocks if b["type"] == "actions"]  # type: ignore[union-attr,index]
    # Next, then Chart (tests/test_charts_slack.py presses that one), then Adjust… for an admin
    # (tests/test_modals.py presses that one).
    next_button, chart_button, adjust_button = paging["elements"]
    assert next_button["action_id"] == "check_page" and chart_button["action_id"] == "usage_chart"
    assert adjust_button["action_id"] == "adjust_open"

    result, name = slack.click("check_page", next_button["value"])
    assert result.status == 200
    [page2] = fake_slack.responses(name)
    assert page2["replace_original"] is True
    assert "page 2 of 3" in reply_text(page2)
    assert [e["text"]["text"] for b in page2["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        ":arrow_left: Previous",
        "Next :arrow_right:",
        ":bar_chart: Chart",
        ":pencil2: Adjust…",
    ]


def test_user_without_ledger_rows_and_lookup_by_uuid(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A profile with no ledger rows is a clean report saying so, looked up by its UUID."""
    with engine.begin() as conn:
        user = add_user(conn)
    text = reply_text(ask(slack, fake_slack, f"check {user}", user="UVIEWER"))
    assert "Reconciled" in text and "No ledger rows." in text and "No operations recorded." in text


def test_bad_input_gets_a_friendly_reply_naming_the_problem(
    slack: SlackClient, fake_slack: FakeSlack
) -> None:
    """Empty text, unknown commands, malformed UUIDs, extra words, unknown users: each explained with an example."""
    cases = {
        "": "You didn't say what to do",
        "frobnicate": "`frobnicate` is not a tokens-bot command",
        "check": "`check` needs a user",
        "check 1234-not-a-uuid": "is neither a UUID nor an email address",
        "check a@example.com extra words": "extra words: `extra words`",
        f"check {uuid.uuid4()}": "No user with id",
        "check nobody@nowhere.example": "No user with email",
        "check <@U123|someone>": "names a Slack user",
        "check <mailto:nobody@nowhere.example|nobody@nowhere.example>": "No user with email",
    }
    for text, expected in cases.items():
        body = ask(slack, fake_slack, text)
        assert expected in reply_text(body), (text, body)
    assert "/tokens check" in reply_text(ask(slack, fake_slack, "help"))


def test_non_admin_is_refused_politely(slack: SlackClient, fake_slack: FakeSlack, engine: Engine) -> None:
    """Balances are personal data: a Slack user who is neither admin nor viewer sees nothing of them."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=123_456, email="private@example.com")
    text = reply_text(ask(slack, fake_slack, f"check {user}", user="USTRANGER"))
    assert "only tokens-bot admins and viewers" in text
    assert "123,456" not in text and "private@example.com" not in text


def test_bad_signatures_and_stale_timestamps_are_rejected(slack: SlackClient, fake_slack: FakeSlack) -> None:
    """A wrong signature, a five-minute-old timestamp or a missing signature gets 401 and no reply."""
    body = b"command=%2Ftokens&text=help&user_id=UADMIN1&response_url=http%3A%2F%2F127.0.0.1%3A1%2Fx"
    before = len(fake_slack.calls)
    wrong = slack.post(body, signature="v0=" + "0" * 64)
    stale_ts = int(time.time()) - 6 * 60
    stale_sig = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=str(stale_ts), body=body)
    stale = slack.post(body, timestamp=stale_ts, signature=stale_sig)
    other_secret = SignatureVerifier("not-the-secret").generate_signature(
        timestamp=str(int(time.time())), body=body
    )
    forged = slack.post(body, signature=other_secret)
    assert [wrong.status, stale.status, forged.status] == [401, 401, 401]
    time.sleep(0.3)
    assert len(fake_slack.calls) == before


def test_health_endpoint_reports_the_database(slack: SlackClient) -> None:
    """GET /healthz answers 200 with the database reachable, and leaks no connection details."""
    import urllib.request

    with urllib.request.urlopen(f"{slack.bot_url}/healthz", timeout=5) as response:
        body = json.loads(response.read())
    assert response.status == 200 and body == {"status": "ok", "database": "ok"}


def test_a_button_missing_its_page_is_refused_as_damaged_not_as_an_error(
    slack: SlackClient, fake_slack: FakeSlack
) -> None:
    """A paging value without its page is the clicker's to fix (run the check again), not a failure of
    ours: no apology, no traceback. tests/test_buttons.py covers the unexpected errors that remain."""
    result, name = slack.click("check_page", json.dumps({"u": str(uuid.uuid4())}))
    assert result.status == 200
    [body] = fake_slack.responses(name)
    text = reply_text(body)
    assert "damaged" in text and "/tokens check" in text and "Something went wrong" not in text
    assert body["replace_original"] is False


def test_check_reply_names_every_reading_of_odd_data(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A profile whose balance is NULL and ledger rows with NULL cost, NULL success and a future date: the
    reply shows the balance as not set, lists each reading under Data quality, and still adds up."""
    with engine.begin() as conn:
        user = add_user(conn, used=700, email="odd-data@example.com")
        conn.execute(
            sql("UPDATE user_profiles SET vibe_assistant_tokens_remaining = NULL WHERE user_id = :u"),
            {"u": user},
        )
        add_usage(conn, user, tokens=1_000, action="admin_grant", model=None)
        add_usage(conn, user, tokens=300, seconds=10)
        conn.execute(
            sql(
                "UPDATE token_usage SET cost_estimate = NULL, success = NULL WHERE user_id = :u AND tokens_used = 300"
            ),
            {"u": user},
        )
        add_usage(conn, user, tokens=400, at=datetime.now(UTC) + timedelta(days=30))
    text_shown = reply_text(ask(slack, fake_slack, f"check {user}"))
    assert "not set (read as 0)" in text_shown and "expected 300" in text_shown
    assert "Data quality" in text_shown
    for reading in ("no success value", "no cost_estimate", "dated in the future", "is not set (NULL)"):
        assert reading in text_shown, reading
    assert "Something went wrong" not in text_shown
