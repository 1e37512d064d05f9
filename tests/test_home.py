"""The Home tab over signed HTTP: `app_home_opened` → `views.publish`, its content by role."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Engine, text

from bot.render.home import NO_ACCESS
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, ask


def open_home(slack: SlackClient, fake_slack: FakeSlack, user: str) -> dict[str, Any]:
    """Open the Home tab as `user` and return the view the bot published for them next."""
    seen = sum(c.method == "views.publish" and c.body.get("user_id") == user for c in fake_slack.calls)
    result = slack.event({"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"})
    assert result.status == 200, result.body
    calls = fake_slack.wait_for(
        lambda c: c.method == "views.publish" and c.body.get("user_id") == user, count=seen + 1
    )
    view: dict[str, Any] = calls[seen].body["view"]
    assert view["type"] == "home"
    return view


def home_buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e.get("value", ""))
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def click_on_home(slack: SlackClient, action_id: str, value: str, user: str) -> None:
    """A click in the Home tab: a `view` container, and no response URL."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": "VHOME"},
        "trigger_id": "1.2.3",
        "view": {"id": "VHOME", "type": "home", "blocks": []},
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}
        ],
    }
    from urllib.parse import urlencode

    assert slack.post(urlencode({"payload": json.dumps(payload)}).encode()).status == 200


def test_the_home_tab_shows_each_person_what_their_role_allows(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A stranger sees how to get access and no numbers; a viewer sees the stored fleet numbers and the
    latest decisions but no vote buttons; the approver sees the request waiting for their vote, approves it
    there (told by DM, the tab republished without it); the requester sees it among their own."""
    with engine.begin() as conn:
        # Earlier tests' requests would fill the tab's lists (oldest first): this test's must show.
        conn.execute(
            text(f"UPDATE {SCHEMA}.approval_requests SET status = 'cancelled' WHERE status = 'pending'")
        )
        user = add_user(conn, remaining=600_000, email="home@example.com")
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.fleet_scans (scanned_at, users, negative, low_balances, low_threshold,"
                " discrepant, minimum) VALUES ('2099-01-01', 123456, 78, 910, 10000, 1112, 1000)"
            )
        )
    number = int(
        re.findall(r"request #(\d+)", ask(slack, fake_slack, "adjust home@example.com +5k home")["text"])[0]
    )

    stranger = json.dumps(open_home(slack, fake_slack, "USTRANGER"))
    assert NO_ACCESS.split(",")[0] in stranger and "123,456" not in stranger and f"#{number}" not in stranger

    viewer = open_home(slack, fake_slack, "UVIEWER")
    shown = json.dumps(viewer)
    for number_shown in ("123,456", "78", "910", "1,112", "2099-01-01 00:00 UTC"):
        assert number_shown in shown
    assert "Latest decisions" in shown and "Nothing waits for your vote" in shown
    assert not [a for a, _ in home_buttons(viewer) if a in ("approval_approve", "approval_reject")]

    requester = json.dumps(open_home(slack, fake_slack, "UADMIN1"))
    assert f"request #{number}" in requester.split("Your pending requests")[1]

    approver = open_home(slack, fake_slack, "UADMIN2")
    waiting = json.dumps(approver).split("Your pending requests")[0]
    assert f"request #{number}" in waiting
    approve = [
        v for a, v in home_buttons(approver) if a == "approval_approve" and json.loads(v)["r"] == number
    ]
    seen = sum(c.method == "views.publish" and c.body.get("user_id") == "UADMIN2" for c in fake_slack.calls)
    click_on_home(slack, "approval_approve", approve[0], "UADMIN2")
    fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == "UADMIN2"
            and "You approved" in c.body["text"]
        )
    )
    again = fake_slack.wait_for(
        lambda c: c.method == "views.publish" and c.body.get("user_id") == "UADMIN2", count=seen + 1
    )[seen].body["view"]
    assert f"request #{number}" not in json.dumps(again).split("The fleet")[0]
    assert "Latest decisions" in json.dumps(again)
