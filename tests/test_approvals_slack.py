"""Two-person approval over signed HTTP into `tokens-bot serve`, with the loopback fake Slack and real PostgreSQL."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user, remaining_of, spend
from tests.support.slack_http import SlackClient, ask, buttons, press, reply_text

CHANNEL = "CAPPROVALS"


@pytest.fixture(autouse=True)
def names(fake_slack: FakeSlack) -> None:
    fake_slack.users.update({"UADMIN1": {"name": "Ada Admin"}, "UADMIN2": {"name": "Bea Approver"}})


def request_number(reply: dict[str, Any]) -> int:
    found = re.search(r"request #(\d+)", reply["text"])
    assert found, reply["text"]
    return int(found.group(1))


def approval_message(fake_slack: FakeSlack, number: int) -> Recorded:
    [posted] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.status == 200
            and c.body.get("channel") == CHANNEL
            and "thread_ts" not in c.body
            and f"request #{number}:" in c.body["text"]
        )
    )
    return posted


def updates(fake_slack: FakeSlack, ts: str, count: int = 1) -> list[Recorded]:
    return fake_slack.wait_for(
        lambda c: c.method == "chat.update" and c.status == 200 and c.body.get("ts") == ts, count=count
    )


def dms(fake_slack: FakeSlack, user: str, number: int, count: int = 1) -> list[Recorded]:
    return fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == user
            and f"#{number} " in c.body["text"]
        ),
        count=count,
    )


def written(engine: Engine, user: uuid.UUID) -> tuple[Any, ...]:
    """Everything a refusal must leave alone: the user's ledger, profile, requests and audit rows."""
    with engine.connect() as conn:
        ledger = conn.execute(
            text("SELECT id, action_type, tokens_used FROM token_usage WHERE user_id = :u ORDER BY id"),
            {"u": user},
        ).all()
        profile = conn.execute(text("SELECT * FROM user_profiles WHERE user_id = :u"), {"u": user}).one()
        requests = conn.execute(
            text(f"SELECT id, status FROM {SCHEMA}.approval_requests WHERE user_id = :u ORDER BY id"),
            {"u": user},
        ).all()
        audit = conn.execute(
            text(
                f"SELECT a.id FROM {SCHEMA}.audit_log a JOIN {SCHEMA}.approval_requests r ON r.id = a.request_id"
                " WHERE r.user_id = :u"
            ),
            {"u": user},
        ).all()
    return tuple(ledger), profile, tuple(requests), tuple(audit)


def granted_user(engine: Engine, email: str, grant: int = 600_000) -> uuid.UUID:
    with engine.begin() as conn:
        user = add_user(conn, remaining=grant, email=email)
        add_usage(conn, user, tokens=grant, action="admin_grant", model=None)
    return user


def test_full_flow_applies_once_updates_the_message_threads_the_reconciliation_and_tells_the_requester(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """adjust → approval message with buttons → a second admin approves → one ledger row with the audit metadata."""
    user = granted_user(engine, "flow@example.com")
    created = ask(slack, fake_slack, "adjust flow@example.com +50k refund for the 3 May outage")
    assert created["response_type"] == "ephemeral"
    assert (
        f"<#{CHANNEL}>" in created["text"] and "waiting" in created["text"] and "expires" in created["text"]
    )
    number = request_number(created)

    posted = approval_message(fake_slack, number)
    shown = reply_text(posted.body)
    for fact in (
        "flow@example.com",
        "600,000",
        "+50,000",
        "650,000",
        "refund for the 3 May outage",
        "Ada Admin",
        "Expires",
    ):
        assert fact in shown, fact
    value = buttons(posted.body)["approval_approve"]
    assert set(buttons(posted.body)) == {"approval_approve", "approval_reject", "approval_cancel"}
    assert remaining_of(engine, user) == 600_000

    reply = press(slack, fake_slack, "approval_approve", value)
    assert reply["replace_original"] is False and reply["response_type"] == "ephemeral"
    assert "You approved" in reply["text"] and "600,000 to 650,000" in reply["text"]

    [update] = updates(fake_slack, posted.response["ts"])
    outcome = reply_text(update.body)
    assert "Approved" in outcome and "Bea Approver" in outcome and "Ada Admin" in outcome
    assert not buttons(update.body)
    [threaded] = fake_slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.body.get("thread_ts") == update.body["ts"]
    )
    assert "Matches the ledger" in reply_text(threaded.body)
    [dm] = dms(fake_slack, "UADMIN1", number)
    assert "Approved" in reply_text(dm.body) and "Bea Approver" in reply_text(dm.body)

    with engine.connect() as conn:
        [row] = conn.execute(
            text(
                "SELECT action_type, tokens_used, success, metadata, id::text AS id FROM token_usage"
                " WHERE user_id = :u AND metadata ? 'request_id'"
            ),
            {"u": user},
        ).all()
        request = (
            conn.execute(text(f"SELECT * FROM {SCHEMA}.approval_requests WHERE id = :id"), {"id": number})
            .mappings()
            .one()
        )
        events = (
            conn.execute(
                text(f"SELECT event FROM {SCHEMA}.audit_log WHERE request_id = :id ORDER BY id"),
                {"id": number},
            )
            .scalars()
            .all()
        )
    assert (row.action_type, row.tokens_used, row.success) == ("admin_grant", 50_000, True)
    md = row.metadata
    assert (
        md["request_id"] == number
        and md["source"] == "slack"
        and md["reason"] == "refund for the 3 May outage"
    )
    assert md["requested_by"] == {"slack_id": "UADMIN1", "name": "Ada Admin"}
    assert md["approved_by"] == {"slack_id": "UADMIN2", "name": "Bea Approver"}
    assert (md["balance_before"], md["balance_after"]) == (600_000, 650_000)
    assert md["requested_at"] < md["approved_at"]
    assert remaining_of(engine, user) == 650_000
    assert (request["status"], request["ledger_row_id"], request["decided_by"]) == (
        "applied",
        row.id,
        "UADMIN2",
    )
    assert events == ["requested", "applied"]

    again = press(slack, fake_slack, "approval_approve", value)
    assert re.search(r"already approved by Bea Approver at \d{4}-\d\d-\d\d \d\d:\d\d UTC", again["text"])
    assert remaining_of(engine, user) == 650_000


def test_refusals_when_asking_write_nothing(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Non-admin, zero, oversized, below zero, malformed, missing reason, unknown user: refused, nothing stored."""
    user = granted_user(engine, "ask-refusals@example.com")
    before = written(engine, user)
    cases = {
        ("adjust ask-refusals@example.com +5k goodwill", "UVIEWER"): "Only tokens-bot admins can ask",
        ("adjust ask-refusals@example.com +0 nothing", "UADMIN1"): "A delta of 0 changes nothing",
        ("adjust ask-refusals@example.com 20M too much", "UADMIN1"): "over the limit of 10,000,000",
        ("adjust ask-refusals@example.com -700k clawback", "UADMIN1"): "from 600,000 to -100,000",
        ("adjust ask-refusals@example.com lots please", "UADMIN1"): "`lots` is not an amount of tokens",
        ("adjust ask-refusals@example.com 1.5 half", "UADMIN1"): "whole tokens only",
        ("adjust ask-refusals@example.com 1.0000005M odd", "UADMIN1"): "whole tokens only",
        ("adjust ask-refusals@example.com +5k", "UADMIN1"): "needs a reason",
        ("adjust nobody@nowhere.example +5k hello", "UADMIN1"): "No user with email",
        ("reconcile ask-refusals@example.com", "USTRANGER"): "only tokens-bot admins and viewers",
    }
    for (command, user_id), expected in cases.items():
        body = ask(slack, fake_slack, command, user=user_id)
        assert expected in reply_text(body), (command, body["text"])
    assert written(engine, user) == before


def test_refusals_when_deciding_leave_the_request_pending_and_write_nothing(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Self-approval, non-approver, beneficiary, deduction below zero at apply: refused; the request stays pending."""
    user = granted_user(engine, "decide-refusals@example.com")
    number = request_number(ask(slack, fake_slack, "adjust decide-refusals@example.com -500k fraud clawback"))
    value = buttons(approval_message(fake_slack, number).body)["approval_approve"]
    with engine.begin() as conn:
        spend(conn, user, 200_000)
    before = written(engine, user)
    fake_slack.users["UADMIN3"] = {"name": "Cy Customer", "email": "Decide-Refusals@example.com"}
    cases = {
        "UADMIN1": "You asked for request",
        "UVIEWER": "Only tokens-bot approvers can approve",
        "UADMIN2": "from 400,000 to -100,000",
    }
    for clicker, expected in cases.items():
        assert expected in press(slack, fake_slack, "approval_approve", value, user=clicker)["text"], clicker
    assert written(engine, user) == before
    assert [status for _id, status in before[2]] == ["pending"]


def test_beneficiary_cannot_approve_their_own_grant(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """An approver whose Slack email is the target user's email is refused; another approver then applies it."""
    user = granted_user(engine, "bea.herself@example.com")
    number = request_number(ask(slack, fake_slack, "adjust bea.herself@example.com +1,000 conference credit"))
    value = buttons(approval_message(fake_slack, number).body)["approval_approve"]
    fake_slack.users["UADMIN2"] = {"name": "Bea Approver", "email": "BEA.herself@example.com"}
    try:
        before = written(engine, user)
        refused = press(slack, fake_slack, "approval_approve", value)
        assert "which is your own email address: nobody approves their own grant" in refused["text"]
        assert written(engine, user) == before
    finally:
        fake_slack.users["UADMIN2"] = {"name": "Bea Approver"}
    assert "You approved" in press(slack, fake_slack, "approval_approve", value)["text"]
    assert remaining_of(engine, user) == 601_000


def test_requests_list_reject_with_a_reason_and_cancel(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """`/tokens requests` lists pending requests with buttons; reject records its reason; only the requester cancels."""
    user = granted_user(engine, "listed@example.com")
    first = request_number(ask(slack, fake_slack, "adjust listed@example.com -1,200 duplicate charge"))
    second = request_number(ask(slack, fake_slack, "adjust listed@example.com 50_000 promo"))
    third = request_number(ask(slack, fake_slack, "adjust listed@example.com +7k typo"))
    listing = ask(slack, fake_slack, "requests", user="UVIEWER")
    shown = reply_text(listing)
    assert all(f"request #{n}" in shown for n in (first, second, third)) and "-1,200 tokens" in shown
    assert "approval_cancel" in shown

    rejected = ask(slack, fake_slack, f"reject {first} charge was legitimate", user="UADMIN2")
    assert "You rejected" in rejected["text"] and "charge was legitimate" in rejected["text"]
    [update] = updates(fake_slack, approval_message(fake_slack, first).response["ts"])
    assert "Rejected" in reply_text(update.body) and "charge was legitimate" in reply_text(update.body)
    dms(fake_slack, "UADMIN1", first)

    assert (
        "not this month" in ask(slack, fake_slack, f"reject #{second} not this month", user="UADMIN2")["text"]
    )

    cancel = buttons(approval_message(fake_slack, third).body)["approval_cancel"]
    assert "Only Ada Admin, who asked" in press(slack, fake_slack, "approval_cancel", cancel)["text"]
    assert "You cancelled" in press(slack, fake_slack, "approval_cancel", cancel, user="UADMIN1")["text"]
    approve = buttons(approval_message(fake_slack, third).body)["approval_approve"]
    assert "was cancelled by Ada Admin" in press(slack, fake_slack, "approval_approve", approve)["text"]

    still_pending = reply_text(ask(slack, fake_slack, "requests"))
    assert all(f"request #{n}*" not in still_pending for n in (first, second, third))
    with engine.connect() as conn:
        audit = conn.execute(
            text(
                f"SELECT request_id, event, details->>'reason' FROM {SCHEMA}.audit_log"
                " WHERE request_id IN (:a, :b, :c) AND event <> 'requested' ORDER BY request_id"
            ),
            {"a": first, "b": second, "c": third},
        ).all()
    assert [tuple(r) for r in audit] == [
        (first, "rejected", "charge was legitimate"),
        (second, "rejected", "not this month"),
        (third, "cancelled", None),
    ]
    assert remaining_of(engine, user) == 600_000


def test_expired_request_cannot_be_approved_and_its_message_says_so(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """After the TTL a click expires the request instead of applying it, and the message shows Expired."""
    user = granted_user(engine, "expired@example.com")
    number = request_number(ask(slack, fake_slack, "adjust expired@example.com +10k late refund"))
    posted = approval_message(fake_slack, number)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {SCHEMA}.approval_requests SET expires_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": number},
        )
    reply = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "expired at" in reply["text"] and "nothing was changed" in reply["text"]
    [update] = updates(fake_slack, posted.response["ts"])
    assert "Expired" in reply_text(update.body) and not buttons(update.body)
    again = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "can no longer be decided" in again["text"]
    assert remaining_of(engine, user) == 600_000
    with engine.connect() as conn:
        events = (
            conn.execute(
                text(f"SELECT event FROM {SCHEMA}.audit_log WHERE request_id = :id ORDER BY id"),
                {"id": number},
            )
            .scalars()
            .all()
        )
    assert events == ["requested", "expired"]


def test_correction_applies_ledger_values_with_before_image_and_a_stale_one_is_refused(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """reconcile → Propose correction → approve sets the Step 5 values, writes no ledger row, audits before/after."""
    with engine.begin() as conn:
        user = add_user(
            conn, remaining=600_000 - 1_000 - 5_000, used=6_000, cost="0.10", email="drift@example.com"
        )
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
        add_usage(conn, user, tokens=1_000, cost_cents="3", seconds=60)
        add_usage(conn, user, tokens=5_000, success=False, error="timeout", seconds=120)
    report = ask(slack, fake_slack, "reconcile drift@example.com", user="UVIEWER")
    assert "Differs from the ledger" in reply_text(report) and "599,000" in reply_text(report)
    proposed = press(
        slack, fake_slack, "reconcile_propose", buttons(report)["reconcile_propose"], user="UADMIN1"
    )
    number = request_number(proposed)
    posted = approval_message(fake_slack, number)
    assert "Correction request" in posted.body["text"] and "remaining +5,000" in posted.body["text"]
    ledger_before = written(engine, user)[0]

    applied = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "You approved" in applied["text"]
    with engine.connect() as conn:
        profile = conn.execute(
            text(
                "SELECT vibe_assistant_tokens_remaining, vibe_assistant_tokens_used, vibe_assistant_total_cost"
                " FROM user_profiles WHERE user_id = :u"
            ),
            {"u": user},
        ).one()
        [(event, details)] = conn.execute(
            text(
                f"SELECT event, details FROM {SCHEMA}.audit_log WHERE request_id = :id AND event <> 'requested'"
            ),
            {"id": number},
        ).all()
    assert tuple(profile) == (599_000, 1_000, Decimal("0.03"))
    assert written(engine, user)[0] == ledger_before
    assert event == "corrected"
    assert details["before"]["vibe_assistant_tokens_remaining"] == 594_000
    assert details["before"]["vibe_assistant_tokens_used"] == 6_000 and "membership_tier" in details["before"]
    assert details["after"]["vibe_assistant_tokens_remaining"] == 599_000
    assert details["approved_by"]["slack_id"] == "UADMIN2"
    [thread] = fake_slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.body.get("thread_ts") == posted.response["ts"]
    )
    assert "Matches the ledger" in reply_text(thread.body)

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE user_profiles SET vibe_assistant_tokens_remaining = 590000 WHERE user_id = :u"),
            {"u": user},
        )
    report = ask(slack, fake_slack, "reconcile drift@example.com")
    propose = buttons(report)["reconcile_propose"]
    with engine.begin() as conn:
        add_usage(conn, user, tokens=10, seconds=600)
    assert (
        "changed since that report"
        in press(slack, fake_slack, "reconcile_propose", propose, user="UADMIN1")["text"]
    )

    report = ask(slack, fake_slack, "reconcile drift@example.com")
    number = request_number(
        press(slack, fake_slack, "reconcile_propose", buttons(report)["reconcile_propose"], user="UADMIN1")
    )
    posted = approval_message(fake_slack, number)
    with engine.begin() as conn:
        add_usage(conn, user, tokens=20, seconds=700)
    before = written(engine, user)
    stale = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "is stale" in stale["text"] and "nothing was changed" in stale["text"]
    assert written(engine, user)[:2] == before[:2]
    [update] = updates(fake_slack, posted.response["ts"])
    assert "Stale" in reply_text(update.body) and list(buttons(update.body)) == ["reconcile_recompute"]
    fresh = press(slack, fake_slack, "reconcile_recompute", buttons(update.body)["reconcile_recompute"])
    assert fresh["replace_original"] is False and "reconcile_propose" in buttons(fresh)


def test_slack_failure_after_commit_is_retried_and_never_reapplies(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """chat.update answering 429 then 500 after the commit: the grant stands once, the update is retried until done."""
    user = granted_user(engine, "flaky@example.com")
    number = request_number(ask(slack, fake_slack, "adjust flaky@example.com +2,500 apology"))
    posted = approval_message(fake_slack, number)
    fake_slack.fail("chat.update", 429, 500, retry_after="1")
    reply = press(
        slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"], user="UADMIN2"
    )
    assert "You approved" in reply["text"]
    [done] = updates(fake_slack, posted.response["ts"])
    attempts = [
        c for c in fake_slack.calls if c.method == "chat.update" and c.body.get("ts") == posted.response["ts"]
    ]
    assert [c.status for c in attempts] == [429, 500, 200]
    assert attempts[1].at - attempts[0].at >= 0.9
    assert "Approved" in reply_text(done.body)
    with engine.connect() as conn:
        grants = conn.execute(
            text("SELECT count(*) FROM token_usage WHERE user_id = :u AND metadata->>'request_id' = :r"),
            {"u": user, "r": str(number)},
        ).scalar_one()
    assert grants == 1 and remaining_of(engine, user) == 602_500
