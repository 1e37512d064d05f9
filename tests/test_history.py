"""`/tokens history` over signed HTTP, and `tokens-bot audit-export`, against the audit trail in PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.entrypoints.cli import main
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, ask, buttons, press, reply_text

CHANNEL = "CAPPROVALS"
_ENTRY = re.compile(r"^:\w+: \*(\d{4}-\d\d-\d\d \d\d:\d\d UTC)\* · \*(\w+)\* · request #(\d+) \(([^)]*)\)")


@pytest.fixture(autouse=True)
def names(fake_slack: FakeSlack) -> None:
    fake_slack.users.update({"UADMIN1": {"name": "Ada Admin"}, "UADMIN2": {"name": "Bea Approver"}})


def request_number(reply: dict[str, Any]) -> int:
    found = re.search(r"request #(\d+)", reply["text"])
    assert found, reply["text"]
    return int(found.group(1))


def approve_value(fake_slack: FakeSlack, number: int, action: str = "approval_approve") -> str:
    [posted] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == CHANNEL
            and "thread_ts" not in c.body
            and f"request #{number}:" in c.body["text"]
        )
    )
    return buttons(posted.body)[action]


def entries(body: dict[str, Any]) -> list[str]:
    """The history's event sections, as the mrkdwn a person reads."""
    return [
        b["text"]["text"]
        for b in body["blocks"]
        if b["type"] == "section" and "text" in b and _ENTRY.match(b["text"]["text"])
    ]


def trail(engine: Engine, user: str) -> list[tuple[str, int]]:
    """The audit log's events for the user, newest first: what the history must list, exactly."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT a.event, a.request_id FROM {SCHEMA}.audit_log a"
                f" JOIN {SCHEMA}.approval_requests r ON r.id = a.request_id"
                " WHERE r.user_id = :u ORDER BY a.at DESC, a.id DESC"
            ),
            {"u": user},
        ).all()
    return [(row.event, row.request_id) for row in rows]


def parsed(section: str) -> tuple[str, int]:
    found = _ENTRY.match(section)
    assert found, section
    return found.group(2), int(found.group(3))


def test_history_lists_the_whole_audit_trail_newest_first_with_people_reasons_and_balances(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Applied, rejected (with a reason holding markup), cancelled, swept as expired, corrected and stale
    requests: every event of each, newest first across two pages, with who, what and the balance."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000, email="history@example.com")
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)

    applied = request_number(ask(slack, fake_slack, "adjust history@example.com +50k refund <!channel> & co"))
    assert (
        "You approved"
        in press(slack, fake_slack, "approval_approve", approve_value(fake_slack, applied))["text"]
    )
    rejected = request_number(ask(slack, fake_slack, "adjust history@example.com -1,200 duplicate charge"))
    ask(slack, fake_slack, f"reject {rejected} legit, ask <!here> <@U999>", user="UADMIN2")
    cancelled = request_number(ask(slack, fake_slack, "adjust history@example.com +7k typo"))
    ask(slack, fake_slack, f"cancel {cancelled}")
    expired = request_number(ask(slack, fake_slack, "adjust history@example.com +10k late refund"))
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {SCHEMA}.approval_requests SET expires_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": expired},
        )
    ask(slack, fake_slack, "requests", user="UVIEWER")  # the sweep closes it, as tokens-bot

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE user_profiles SET vibe_assistant_tokens_remaining = 640000 WHERE user_id = :u"),
            {"u": user},
        )
    report = ask(slack, fake_slack, "reconcile history@example.com")
    corrected = request_number(
        press(slack, fake_slack, "reconcile_propose", buttons(report)["reconcile_propose"], user="UADMIN1")
    )
    press(slack, fake_slack, "approval_approve", approve_value(fake_slack, corrected))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE user_profiles SET vibe_assistant_tokens_remaining = 630000 WHERE user_id = :u"),
            {"u": user},
        )
    report = ask(slack, fake_slack, "reconcile history@example.com")
    stale = request_number(
        press(slack, fake_slack, "reconcile_propose", buttons(report)["reconcile_propose"], user="UADMIN1")
    )
    with engine.begin() as conn:
        add_usage(conn, user, tokens=25, seconds=60)
    assert (
        "is stale" in press(slack, fake_slack, "approval_approve", approve_value(fake_slack, stale))["text"]
    )

    expected = trail(engine, user)
    assert len(expected) == 12 and [e for e, _ in expected].count("requested") == 6
    events = {"requested", "applied", "rejected", "cancelled", "expired", "corrected", "stale"}
    assert {e for e, _ in expected} == events

    first = ask(slack, fake_slack, "history history@example.com", user="UVIEWER")
    assert first["response_type"] == "ephemeral"
    shown = reply_text(first)
    assert "12* events on *6* requests" in shown and "page 1 of 2" in shown
    page1 = entries(first)
    assert len(page1) == 10
    assert list(buttons(first)) == ["history_page"]
    second = press(
        slack, fake_slack, "history_page", buttons(first)["history_page"], user="UVIEWER", channel="C1"
    )
    assert second["replace_original"] is True
    page2 = entries(second)
    assert "page 2 of 2" in reply_text(second) and len(page2) == 2
    back = press(
        slack, fake_slack, "history_page", buttons(second)["history_page"], user="UVIEWER", channel="C1"
    )
    assert entries(back) == page1
    listed = page1 + page2
    assert [parsed(s) for s in listed] == expected

    by = {parsed(s): s for s in listed}
    with engine.connect() as conn:
        ledger_row = conn.execute(
            text(f"SELECT ledger_row_id FROM {SCHEMA}.approval_requests WHERE id = :id"), {"id": applied}
        ).scalar_one()
    assert ledger_row
    grant = by[("applied", applied)]
    assert "grant +50,000 tokens" in grant and "balance 600,000 → 650,000" in grant
    assert "Bea Approver (<@UADMIN2>)" in grant and f"ledger row `{ledger_row}`" in grant
    asked = by[("requested", applied)]
    assert "Ada Admin (<@UADMIN1>)" in asked and "balance 600,000 when asked; 650,000 if approved" in asked
    assert "reason: refund &lt;!channel&gt; &amp; co" in asked
    no = by[("rejected", rejected)]
    assert "deduction -1,200 tokens" in no and "Bea Approver" in no and "nothing was changed" in no
    assert "reason: legit, ask &lt;!here&gt; &lt;@U999&gt;" in no
    assert "Ada Admin" in by[("cancelled", cancelled)] and "withdrawn" in by[("cancelled", cancelled)]
    assert "by tokens-bot (the expiry sweep)" in by[("expired", expired)]
    fixed = by[("corrected", corrected)]
    assert "correction, remaining +10,000" in fixed and "remaining 640,000 → 650,000" in fixed
    assert "Bea Approver" in fixed and "ledger row" not in fixed
    assert "the ledger moved" in by[("stale", stale)]
    everything = reply_text(first) + reply_text(second)
    for raw in ("<!channel>", "<!here>", "<@U999>"):
        assert raw not in everything


def test_history_refusals_damaged_pages_and_users_without_history(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Non-viewers see nothing; a forged page value is damaged; unknown users and quiet users are told so."""
    with engine.begin() as conn:
        quiet = add_user(conn, remaining=1_000, email="quiet-history@example.com")
    refused = ask(slack, fake_slack, "history quiet-history@example.com", user="USTRANGER")
    assert "only tokens-bot admins and viewers" in reply_text(refused) and quiet not in reply_text(refused)
    page = json.dumps({"u": quiet, "p": 1})
    assert (
        "only tokens-bot admins and viewers"
        in press(slack, fake_slack, "history_page", page, user="USTRANGER", channel="C1")["text"]
    )
    for forged in ({"u": quiet, "p": 0}, {"u": quiet, "p": "2"}, {"p": 2}, {"u": quiet}):
        body = press(slack, fake_slack, "history_page", json.dumps(forged), user="UVIEWER", channel="C1")
        assert "damaged" in body["text"] and "/tokens history" in body["text"], forged
        assert body["replace_original"] is False

    nothing = reply_text(ask(slack, fake_slack, "history quiet-history@example.com", user="UVIEWER"))
    assert "Nothing recorded yet for quiet-history@example.com" in nothing
    assert "No user with email nobody-h@nowhere.example" in reply_text(
        ask(slack, fake_slack, "history nobody-h@nowhere.example", user="UVIEWER")
    )
    missing = uuid.uuid4()
    assert f"No user with id {missing}" in reply_text(ask(slack, fake_slack, f"history {missing}"))
    assert "`history` needs a user" in reply_text(ask(slack, fake_slack, "history"))
    assert "takes one user" in reply_text(ask(slack, fake_slack, "history a@example.com b@example.com"))


def test_history_outlives_the_profile_it_is_about(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A user id whose profile was deleted still shows its audit trail: auditors need it most then."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=5_000, email="gone-history@example.com")
    number = request_number(ask(slack, fake_slack, "adjust gone-history@example.com +1k goodbye gift"))
    ask(slack, fake_slack, f"cancel {number}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM user_profiles WHERE user_id = :u"), {"u": user})
    body = ask(slack, fake_slack, f"history {user}", user="UVIEWER")
    assert [parsed(s) for s in entries(body)] == [("cancelled", number), ("requested", number)]


def export(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str, *argv: str
) -> str:
    """`tokens-bot audit-export …` run in-process against the test database; its stdout."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOKENS_SCHEMA", SCHEMA)
    capsys.readouterr()
    assert main(["audit-export", *argv]) == 0
    return capsys.readouterr().out


def audit_rows(engine: Engine, since: datetime | None = None) -> list[dict[str, Any]]:
    """The audit log as the export must write it, oldest first, read straight from PostgreSQL."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.id AS request_id, r.kind, r.user_id, r.user_email, a.event, a.actor, a.actor_name,"
                f" a.at, a.details::text AS details FROM {SCHEMA}.audit_log a"
                f" JOIN {SCHEMA}.approval_requests r ON r.id = a.request_id"
                " WHERE a.at >= coalesce(CAST(:since AS timestamptz), '-infinity') ORDER BY a.at, a.id"
            ),
            {"since": since},
        ).mappings()
        return [dict(row) for row in rows]


def as_csv(row: dict[str, Any]) -> list[str]:
    at = row["at"].astimezone(UTC).isoformat()
    email = row["user_email"] or ""
    fields = (
        row["request_id"],
        row["kind"],
        row["user_id"],
        email,
        row["event"],
        row["actor"],
        row["actor_name"],
    )
    return [*map(str, fields), at, row["details"]]


def test_audit_export_writes_every_audit_row_in_both_formats_and_honours_since(
    slack: SlackClient,
    fake_slack: FakeSlack,
    engine: Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """CSV with a header and JSONL hold exactly the audit log's rows, oldest first; --since leaves out older
    days; a bad --since exits 2 with a message saying the form."""
    with engine.begin() as conn:
        add_user(conn, remaining=9_000, email="export@example.com")
    old = request_number(ask(slack, fake_slack, 'adjust export@example.com +2k a, "quoted" reason'))
    ask(slack, fake_slack, f"cancel {old}")
    recent = request_number(ask(slack, fake_slack, "adjust export@example.com -3k clawback <!channel>"))
    ask(slack, fake_slack, f"reject {recent} not today", user="UADMIN2")
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {SCHEMA}.audit_log SET at = at - interval '400 days' WHERE request_id = :id"),
            {"id": old},
        )

    everything = audit_rows(engine)
    assert len(everything) >= 4
    table = list(csv.reader(io.StringIO(export(monkeypatch, capsys, database_url))))
    assert table[0] == [
        "request_id",
        "kind",
        "user_id",
        "user_email",
        "event",
        "actor",
        "actor_name",
        "at",
        "details",
    ]
    assert table[1:] == [as_csv(row) for row in everything]
    assert table[1][7].endswith("+00:00")

    lines = export(monkeypatch, capsys, database_url, "--format", "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == [as_json(row) for row in everything]

    day = (datetime.now(UTC) - timedelta(days=1)).date()
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    recent_rows = audit_rows(engine, since)
    assert all(row["request_id"] != old for row in recent_rows)
    assert any(row["request_id"] == recent for row in recent_rows)
    table = list(
        csv.reader(io.StringIO(export(monkeypatch, capsys, database_url, "--since", day.isoformat())))
    )
    assert table[1:] == [as_csv(row) for row in recent_rows]
    later = export(monkeypatch, capsys, database_url, "--since", "2999-01-01", "--format", "jsonl")
    assert later == ""

    for bad in ("2026-13-01", "yesterday", "2026-5-1", "20260501"):
        with pytest.raises(SystemExit) as exit_:
            main(["audit-export", "--since", bad])
        assert exit_.value.code == 2
        assert "YYYY-MM-DD" in capsys.readouterr().err


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": row["at"].astimezone(UTC).isoformat(), "details": json.loads(row["details"])}


def test_a_full_page_of_huge_entries_is_block_kit_within_slacks_limits() -> None:
    """25 events (the largest page) with reasons, names and ids far past Slack's limits still make a message
    slack_sdk accepts, with every text escaped and no section over 3,000 characters."""
    from slack_sdk.models.blocks import Block

    from bot.render.history import render_history
    from core.domain.approvals import Person, RequestKind
    from core.domain.history import HistoryEntry, HistoryEvent, HistoryReport
    from core.domain.models import Page, UserRef

    at = datetime(2026, 5, 4, 9, 20, tzinfo=UTC)
    entries_ = [
        HistoryEntry(
            audit_id=i,
            at=at,
            event=list(HistoryEvent)[i % len(HistoryEvent)],
            actor=Person(slack_id="U" + "9" * 30, name="<!channel>" * 300),
            request_id=10**15 + i,
            kind=RequestKind.ADJUSTMENT,
            delta=-(10**12),
            correction=None,
            balance_before=10**12,
            balance_after=0,
            ledger_row_id="`<x>`" * 400,
            reason="&<!here>" * 1_000,
        )
        for i in range(25)
    ]
    report = HistoryReport(
        user=UserRef(user_id="u" * 128, email="a" * 400 + "@example.com"),
        entries=entries_,
        total=10**6,
        requests=10**5,
        offset=25,
        page=Page(number=2, count=40_000),
    )
    reply = render_history(report)
    blocks = reply.as_kwargs()["blocks"]
    assert len(blocks) == 28 and blocks[-1]["type"] == "actions"
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None
        assert parsed.to_dict() == block
    assert "<!here>" not in json.dumps(blocks) and "<!channel>" not in json.dumps(blocks)
