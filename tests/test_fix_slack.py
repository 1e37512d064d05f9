"""From a finding to a verified fix in Slack, over signed HTTP into `tokens-bot serve` with the loopback fake
Slack and real PostgreSQL: the check's Propose fix, the discrepancy list's groups and its "Propose fix for
all", the fix request's message, the list file in its thread, and the progress and verified summary that
end it."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from bot.render.fleet import render_discrepancies
from core.domain.fixes import Cause
from core.domain.models import Page
from core.domain.reports import DiscrepancyReport
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user, remaining_of
from tests.support.slack_http import SlackClient, ask, buttons, press, reply_text

CHANNEL = "CAPPROVALS"
GRANT = 9_000_000
# The fleet lists' minimum: above the single-user tests' discrepancies.
MINIMUM = 3_000_000


@pytest.fixture(autouse=True)
def names(fake_slack: FakeSlack) -> None:
    fake_slack.users.update(
        {
            "UADMIN1": {"name": "Ada Admin"},
            "UADMIN2": {"name": "Bea Approver"},
            "UADMIN3": {"name": "Cy Third"},
        }
    )


@pytest.fixture(scope="module")
def fleet_bot(
    server_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SlackClient, Engine]]:
    """A bot on a database of its own: a batch fixes every user of a cause, so it sees only this file's.
    A batch needs the quorum's largest number: two of its three approvers."""
    with scratch_database(server_url, "tokens_fix_slack") as url:
        engine = make_engine(url, pool_size=2)
        env = bot_env(
            url,
            fake_slack.api_url,
            TOKENS_APPROVERS="UADMIN2,UADMIN3",
            TOKENS_QUORUM='{"0": 1, "50000000": 2}',
        )
        process = BotProcess(env, tmp_path_factory.mktemp("fix-bot") / "bot.log")
        yield SlackClient(process.url, SIGNING_SECRET, fake_slack.url), engine
        process.stop()
        engine.dispose()


def duplicated(conn: Connection, email: str, n: int) -> str:
    """One operation of `n` tokens logged twice two seconds apart; the profile charged it once."""
    user = add_user(conn, remaining=GRANT - n, used=n, cost="0.02", email=email)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    for second in (100, 102):
        add_usage(conn, user, tokens=n, cost_cents="2", seconds=second)
    return user


def unlogged(conn: Connection, email: str, n: int) -> str:
    """A grant of `n` the balance holds but the ledger never saw."""
    user = add_user(conn, remaining=GRANT - 1_000 + n, used=1_000, email=email)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=1_000, seconds=10)
    return user


def request_number(reply: dict[str, Any]) -> int:
    found = re.search(r"request #(\d+)", reply["text"])
    assert found, reply["text"]
    return int(found.group(1))


def approval_message(fake_slack: FakeSlack, number: int, since: int = 0) -> Recorded:
    """Request `number`'s message, posted after call `since` (another database numbers its own requests)."""
    [posted] = fake_slack.wait_for(
        lambda c: (
            fake_slack.calls.index(c) >= since
            and c.method == "chat.postMessage"
            and c.body.get("channel") == CHANNEL
            and "thread_ts" not in c.body
            and f"request #{number}:" in c.body["text"]
        )
    )
    return posted


def final_update(fake_slack: FakeSlack, ts: str) -> Recorded:
    """The message's last update: the one that ends with the verified summary."""
    found = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.update" and c.body.get("ts") == ts and "Verification" in reply_text(c.body)
        )
    )
    return found[-1]


def accessories(body: dict[str, Any]) -> dict[str, str]:
    """The buttons beside a list's rows and groups, label -> value."""
    return {
        b["accessory"]["text"]["text"]: b["accessory"]["value"]
        for b in body.get("blocks", [])
        if b.get("accessory", {}).get("type") == "button"
    }


def ledger_rows(engine: Engine, user: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id::text AS id, action_type, tokens_used, metadata FROM token_usage"
                    " WHERE user_id = :u ORDER BY created_at, id"
                ),
                {"u": user},
            ).all()
        )


def test_propose_fix_from_the_check_then_approved_applies_the_reversal_and_the_check_says_reconciled(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """check → Propose fix (admin only) → the request names cause, side, values and rows → a second person
    approves → the message ends with the verified summary, the thread and the requester hear it, and the
    user's check says reconciled; the only write is one reversing ledger row."""
    with engine.begin() as conn:
        user = duplicated(conn, "fix-dup@example.com", 10_128)
    before = ledger_rows(engine, user)

    viewer = ask(slack, fake_slack, "check fix-dup@example.com", user="UVIEWER")
    assert "Recommended" in reply_text(viewer) and "ledger reversal" in reply_text(viewer)
    assert not accessories(viewer)

    check = ask(slack, fake_slack, "check fix-dup@example.com")
    shown = reply_text(check)
    assert "*Fix*" in shown and "Recommended" in shown and "wrong side: the ledger" in shown
    proposed = accessories(check)["Propose fix: duplicates"]
    created = press(slack, fake_slack, "fix_propose", proposed, user="UADMIN1")
    assert created["replace_original"] is False and "waiting" in created["text"]
    number = request_number(created)

    posted = approval_message(fake_slack, number)
    message = reply_text(posted.body)
    for fact in ("Fix request", "`duplicates`", "ledger reversal", "the ledger", "Ledger rows it inserts"):
        assert fact in message, fact
    duplicate_ids = [row.id for row in before if row.tokens_used == 10_128]
    assert duplicate_ids[1] in message  # the row it reverses: the later of the two
    assert set(buttons(posted.body)) == {"approval_approve", "approval_reject", "approval_cancel"}

    reply = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "You approved Fix request" in reply["text"] and "1 now reconciled" in reply["text"]

    final = reply_text(final_update(fake_slack, posted.response["ts"]).body)
    assert "Approved" in final and "1 applied, 0 skipped as stale, 0 failed" in final
    assert "Verification failed" not in final and not buttons(
        final_update(fake_slack, posted.response["ts"]).body
    )
    [threaded] = fake_slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.body.get("thread_ts") == posted.response["ts"]
    )
    assert "1 now reconciled" in reply_text(threaded.body)
    fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == "UADMIN1"
            and f"Fix request #{number} " in c.body["text"]
            and "now reconciled" in c.body["text"]
        )
    )

    after = ledger_rows(engine, user)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    reversal = after[-1]
    assert (reversal.tokens_used, reversal.metadata["reverses"]) == (-10_128, duplicate_ids[1])
    assert reversal.metadata["request_id"] == number
    assert remaining_of(engine, user) == GRANT - 10_128
    assert ":white_check_mark: Reconciled" in reply_text(ask(slack, fake_slack, "check fix-dup@example.com"))
    history = reply_text(ask(slack, fake_slack, "history fix-dup@example.com"))
    assert "fix_applied" in history and f"request #{number} (fix)" in history

    again = press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert "already approved" in again["text"]
    assert len(ledger_rows(engine, user)) == len(before) + 1


def test_discrepancies_group_by_cause_filter_and_a_batch_is_listed_approved_once_and_applied_once(
    fleet_bot: tuple[SlackClient, Engine], fake_slack: FakeSlack
) -> None:
    """`/tokens discrepancies <min> duplicates` filters to the cause; its group's "Propose fix for all" makes
    one request whose complete list is a CSV in the thread; one approval reverses each duplicate once."""
    slack, engine = fleet_bot
    with engine.begin() as conn:
        dups = {
            f"batch-dup-{i}@example.com": duplicated(conn, f"batch-dup-{i}@example.com", MINIMUM + 1_000 * i)
            for i in range(1, 5)
        }
        grant = unlogged(conn, "batch-grant@example.com", MINIMUM + 500)
    before = {user: ledger_rows(engine, user) for user in dups.values()}
    start = len(fake_slack.calls)

    everyone = ask(slack, fake_slack, f"discrepancies {MINIMUM}")
    listed = reply_text(everyone)
    assert "By cause" in listed and "`duplicates`" in listed and "`unlogged-grant`" in listed
    assert "batch-grant@example.com" in listed

    viewer = ask(slack, fake_slack, f"discrepancies {MINIMUM} duplicates", user="UVIEWER")
    assert not accessories(viewer).keys() & {"Propose fix for all 4 users"}

    filtered = ask(slack, fake_slack, f"discrepancies {MINIMUM} duplicates")
    shown = reply_text(filtered)
    assert all(email in shown for email in dups) and "batch-grant@example.com" not in shown
    assert "whose cause is `duplicates`" in shown
    value = accessories(filtered)["Propose fix for all 4 users"]

    created = press(slack, fake_slack, "fix_propose_batch", value, user="UADMIN1", channel="CADMINS")
    assert "waiting" in created["text"] and "4 users (duplicates)" in created["text"]
    number = request_number(created)
    posted = approval_message(fake_slack, number, start)
    message = reply_text(posted.body)
    assert (
        "ledger reversal" in message and "Largest items" in message and "batch-dup-4@example.com" in message
    )
    assert "Ledger rows to insert*\\n4" in message

    [complete] = fake_slack.wait_for(
        lambda c: c.method == "files.completeUploadExternal" and fake_slack.calls.index(c) >= start
    )
    assert complete.body["channel_id"] == CHANNEL and complete.body["thread_ts"] == posted.response["ts"]
    file_id = complete.body["files"][0]["id"]
    rows = list(csv.DictReader(io.StringIO(fake_slack.uploads([file_id])[file_id].decode())))
    assert sorted(r["email"] for r in rows) == sorted(dups)
    assert {r["state"] for r in rows} == {"pending"}
    # Each user's planned row: the duplicate's action type, its tokens taken back, the row it reverses.
    for r in rows:
        user = dups[r["email"]]
        _, duplicate = [row for row in before[user] if row.tokens_used == int(r["tokens"])]
        assert r["ledger_rows"] == f"chat_conversation {-int(r['tokens']):+,} reversing {duplicate.id}"
        assert r["remaining_before"] == r["remaining_after"]

    approve = buttons(posted.body)["approval_approve"]
    assert (
        "1 more approval from other approvers"
        in press(slack, fake_slack, "approval_approve", approve)["text"]
    )
    [voted] = fake_slack.wait_for(
        lambda c: c.method == "chat.update" and c.body.get("ts") == posted.response["ts"]
    )
    assert "1 of 2 approvals: Bea Approver" in reply_text(voted.body) and "approval_approve" in buttons(
        voted.body
    )
    assert all(ledger_rows(engine, user) == rows for user, rows in before.items())
    waiting = reply_text(ask(slack, fake_slack, "requests"))
    assert "4 users (duplicates)" in waiting and "1 of 2 approvals: Bea Approver" in waiting
    reply = press(slack, fake_slack, "approval_approve", approve, user="UADMIN3")
    assert "4 now reconciled" in reply["text"]
    final = reply_text(final_update(fake_slack, posted.response["ts"]).body)
    assert "4 applied, 0 skipped as stale, 0 failed, of 4" in final

    for user, rows_before in before.items():
        after = ledger_rows(engine, user)
        assert after[: len(rows_before)] == rows_before
        [reversal] = after[len(rows_before) :]
        assert "reverses" in reversal.metadata and reversal.metadata["request_id"] == number
    press(slack, fake_slack, "approval_approve", buttons(posted.body)["approval_approve"])
    assert all(len(ledger_rows(engine, u)) == len(before[u]) + 1 for u in dups.values())

    # The other group's batch, rejected: nothing is written, and its message says so.
    grants = accessories(ask(slack, fake_slack, f"discrepancies {MINIMUM} unlogged-grant"))
    created = press(
        slack, fake_slack, "fix_propose_batch", grants["Propose fix for all 1 user"], user="UADMIN1"
    )
    grant_request = request_number(created)
    approval_message(fake_slack, grant_request, start)
    rows_before = ledger_rows(engine, grant)
    rejected = ask(slack, fake_slack, f"reject {grant_request} not this batch", user="UADMIN2")
    assert "You rejected Fix request" in rejected["text"]
    assert ledger_rows(engine, grant) == rows_before
    with engine.connect() as conn:
        states = conn.execute(
            text(f"SELECT DISTINCT state FROM {SCHEMA}.fix_items WHERE request_id = :r"), {"r": grant_request}
        ).scalars()
        assert set(states) == {"pending"}


def test_an_unknown_cause_is_answered_with_the_valid_names(slack: SlackClient, fake_slack: FakeSlack) -> None:
    reply = reply_text(ask(slack, fake_slack, "discrepancies 100 dupes"))
    assert "`dupes` is not a cause" in reply
    for name in ("failed-charged", "uncharged", "duplicates", "unlogged-grant", "unexplained"):
        assert f"`{name}`" in reply
    help_text = reply_text(ask(slack, fake_slack, "help"))
    assert "/tokens discrepancies [min] [cause]" in help_text


def test_a_stale_or_refused_proposal_is_a_friendly_reply_to_the_clicker_alone(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """A ledger row written after the check makes its Propose fix stale; a viewer's click is refused; neither
    asks for anything."""
    with engine.begin() as conn:
        user = duplicated(conn, "fix-stale@example.com", 4_321)
    value = accessories(ask(slack, fake_slack, "check fix-stale@example.com"))["Propose fix: duplicates"]
    with engine.begin() as conn:
        add_usage(conn, user, tokens=50, seconds=5_000)
    stale = press(slack, fake_slack, "fix_propose", value, user="UADMIN1", channel="CADMINS")
    assert stale["replace_original"] is False and stale["response_type"] == "ephemeral"
    assert "changed since that check (+1 rows)" in stale["text"]
    viewer = press(slack, fake_slack, "fix_propose", value, user="UVIEWER", channel="CADMINS")
    assert "Only tokens-bot admins" in viewer["text"]
    with engine.connect() as conn:
        asked = conn.execute(
            text(f"SELECT count(*) FROM {SCHEMA}.approval_requests WHERE user_id = :u"), {"u": user}
        ).scalar_one()
    assert asked == 0


def test_paging_a_filtered_list_keeps_its_cause(slack: SlackClient, fake_slack: FakeSlack) -> None:
    """A filtered list's Next carries its cause, and a page button with a cause lists that cause only."""
    report = DiscrepancyReport(
        minimum=MINIMUM,
        cause=Cause.UNLOGGED_GRANT,
        total=30,
        deferred=0,
        grace_seconds=60,
        rows=[],
        offset=0,
        page=Page(number=1, count=3),
    )
    [next_page] = buttons(render_discrepancies(report).as_kwargs()).values()
    assert json.loads(next_page) == {"m": MINIMUM, "p": 2, "c": "unlogged-grant"}
    result, name = slack.click("discrepancies_page", json.dumps({"m": MINIMUM, "p": 1, "c": "negative"}))
    assert result.status == 200
    [page] = fake_slack.responses(name)
    assert "whose cause is `negative`" in reply_text(page)
