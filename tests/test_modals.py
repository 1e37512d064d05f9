"""Forms (Slack modals) over signed HTTP: Reject asks why, and the adjust form is the adjust command."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.entrypoints.console import run_console
from core.domain.approvals import Person
from core.domain.errors import UsageError
from core.services.service import TokensService
from core.settings import Settings
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user, remaining_of
from tests.support.slack_http import SlackClient, ask, buttons, reply_text

CHANNEL = "CAPPROVALS"


@pytest.fixture(autouse=True)
def names(fake_slack: FakeSlack) -> None:
    fake_slack.users.update({"UADMIN1": {"name": "Ada Admin"}, "UADMIN2": {"name": "Bea Approver"}})


def granted(engine: Engine, email: str, grant: int = 600_000) -> str:
    with engine.begin() as conn:
        user = add_user(conn, remaining=grant, email=email)
        add_usage(conn, user, tokens=grant, action="admin_grant", model=None)
    return user


def opened(fake_slack: FakeSlack, seen: int, form_id: str) -> dict[str, Any]:
    """The next modal the bot opened (after the `seen` it had opened before) for form `form_id`."""
    calls = fake_slack.wait_for(lambda c: c.method == "views.open", count=seen + 1)
    view: dict[str, Any] = calls[seen].body["view"]
    assert calls[seen].body["trigger_id"] == "1.2.3" and view["callback_id"] == form_id
    return view


def views_opened(fake_slack: FakeSlack) -> int:
    return sum(c.method == "views.open" for c in fake_slack.calls)


def dm_to(fake_slack: FakeSlack, user: str, needle: str) -> Recorded:
    [found] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage" and c.body.get("channel") == user and needle in c.body["text"]
        )
    )
    return found


def field_errors(result: Any) -> dict[str, str]:
    assert result.status == 200, result.body
    answer = json.loads(result.body)
    assert answer["response_action"] == "errors"
    return {name: html.unescape(error) for name, error in answer["errors"].items()}


def request_row(engine: Engine, number: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    f"SELECT kind, status, user_id, delta, reason, requested_by, decision_reason"
                    f" FROM {SCHEMA}.approval_requests WHERE id = :n"
                ),
                {"n": number},
            )
            .mappings()
            .one()
        )


def number_in(reply_text_: str) -> int:
    return int(reply_text_.split("request #")[1].split(":")[0].split(" ")[0].rstrip("*"))


def test_reject_opens_a_form_that_requires_a_reason_which_is_recorded_and_shown(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine, settings: Settings
) -> None:
    """Reject… opens a modal before anything else; a blank reason stays on the field; the reason given is
    stored on the request and in the audit trail, shown escaped on the approval message, and the core
    itself refuses a rejection without one."""
    user = granted(engine, "reject-form@example.com")
    number = number_in(ask(slack, fake_slack, "adjust reject-form@example.com +5k goodwill")["text"])
    [posted] = fake_slack.wait_for(
        lambda c: c.method == "chat.postMessage" and f"request #{number}:" in c.body.get("text", "")
    )
    seen = views_opened(fake_slack)
    result, _ = slack.click("approval_reject", buttons(posted.body)["approval_reject"], user="UADMIN2")
    assert result.status == 200
    form = opened(fake_slack, seen, "reject_form")
    assert f"#{number}" in form["title"]["text"]

    assert "reason" in field_errors(slack.submit(form, {"reason": "   "}, user="UADMIN2"))
    assert request_row(engine, number)["status"] == "pending"

    reason = "duplicate of <!channel> & #11"
    done = slack.submit(form, {"reason": reason}, user="UADMIN2")
    assert done.status == 200 and not done.body
    [update] = fake_slack.wait_for(
        lambda c: c.method == "chat.update" and c.body.get("ts") == posted.response["ts"]
    )
    shown = reply_text(update.body)
    assert (
        "Rejected" in shown
        and "duplicate of &lt;!channel&gt; &amp; #11" in shown
        and "<!channel>" not in shown
    )
    assert "You rejected" in dm_to(fake_slack, "UADMIN2", "You rejected").body["text"]
    row = request_row(engine, number)
    assert (row["status"], row["decision_reason"]) == ("rejected", reason)
    with engine.connect() as conn:
        audited = conn.execute(
            text(
                f"SELECT details->>'reason' FROM {SCHEMA}.audit_log WHERE request_id = :n AND event = 'rejected'"
            ),
            {"n": number},
        ).scalar_one()
    assert audited == reason
    assert remaining_of(engine, user) == 600_000

    refused = ask(slack, fake_slack, f"reject {number}", user="UADMIN2")
    assert "needs the request number and a reason" in refused["text"]
    with pytest.raises(UsageError, match="needs a reason"):
        TokensService(settings, engine).reject(Person(slack_id="UADMIN2", name="Bea"), number, "  ")


ADJUST_CASES = [
    # (user, delta, reason, the field a form shows the error on, or None when it is accepted)
    ("not-a-user", "+5k", "why", "user"),
    ("<@U123>", "+5k", "why", "user"),
    ("form-eq@example.com", "1.5", "why", "delta"),
    ("form-eq@example.com", "lots", "why", "delta"),
    ("form-eq@example.com", "+5k", "", "reason"),
    ("form-eq@example.com", "", "why", "delta"),
]


@pytest.mark.parametrize(("user", "delta", "reason", "field"), ADJUST_CASES)
def test_the_adjust_form_refuses_on_the_field_what_the_command_refuses(
    slack: SlackClient, fake_slack: FakeSlack, user: str, delta: str, reason: str, field: str
) -> None:
    """Each input the command refuses, the form refuses with the same words, shown on the field at fault."""
    seen = views_opened(fake_slack)
    result, _ = slack.command("adjust")
    assert result.status == 200 and not result.body
    form = opened(fake_slack, seen, "adjust_form")
    errors = field_errors(slack.submit(form, {"user": user, "delta": delta, "reason": reason}))
    typed = ask(slack, fake_slack, " ".join(w for w in ("adjust", user, delta, reason) if w))
    assert list(errors) == [field]
    if delta:  # the command cannot tell a missing delta from a missing reason: both are "needs …"
        assert errors[field] == html.unescape(typed["text"])


def test_adjust_through_the_form_equals_adjust_through_the_command(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """The same request from either, and the core's refusals word for word: the form's reach its DM."""
    user = granted(engine, "form-eq@example.com", grant=1_000)
    by_command = number_in(ask(slack, fake_slack, "adjust form-eq@example.com +1.5k  refund, May")["text"])
    seen = views_opened(fake_slack)
    slack.command("adjust")
    form = opened(fake_slack, seen, "adjust_form")
    slack.submit(form, {"user": " form-eq@example.com ", "delta": "+1.5k", "reason": "refund, May"})
    by_form = number_in(dm_to(fake_slack, "UADMIN1", f"request #{by_command + 1}").body["text"])
    assert by_form == by_command + 1
    keep = ("kind", "status", "user_id", "delta", "reason", "requested_by")
    assert {k: request_row(engine, by_form)[k] for k in keep} == {
        k: request_row(engine, by_command)[k] for k in keep
    }
    assert request_row(engine, by_form)["user_id"] == user

    refused = ask(slack, fake_slack, "adjust form-eq@example.com -5k too much")
    slack.command("adjust")
    form = opened(fake_slack, seen + 1, "adjust_form")
    slack.submit(form, {"user": "form-eq@example.com", "delta": "-5k", "reason": "too much"})
    assert dm_to(fake_slack, "UADMIN1", "below zero").body["text"] == refused["text"]
    assert remaining_of(engine, user) == 1_000


def test_the_adjust_form_is_for_admins_and_the_check_offers_it_to_them_alone(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """`/tokens adjust` alone opens the form for an admin and refuses a viewer; the check's Adjust… button
    is on an admin's check only, and opens the form with the user filled in."""
    granted(engine, "adjust-button@example.com")
    refused = ask(slack, fake_slack, "adjust", user="UVIEWER")
    assert "Only tokens-bot admins" in refused["text"]
    assert "adjust_open" not in buttons(
        ask(slack, fake_slack, "check adjust-button@example.com", user="UVIEWER")
    )

    admin_check = buttons(ask(slack, fake_slack, "check adjust-button@example.com"))
    seen = views_opened(fake_slack)
    result, _ = slack.click("adjust_open", admin_check["adjust_open"])
    assert result.status == 200
    form = opened(fake_slack, seen, "adjust_form")
    [user_field] = [b for b in form["blocks"] if b.get("block_id") == "user"]
    assert user_field["element"]["initial_value"] == "adjust-button@example.com"


def typed(*lines: str) -> Iterator[str]:
    yield from lines


def test_the_console_shows_a_form_as_numbered_fields_and_asks_again_for_the_wrong_ones(
    settings: Settings, engine: Engine
) -> None:
    """`/tokens adjust` in the console asks field by field; a wrong delta is asked again with its error.
    The posted request's Reject… asks for a reason, again when left blank, and records it."""
    granted(engine, "console-form@example.com")
    settings = settings.model_copy(update={"tokens_approvals_channel": "approvals"})
    lines = typed(
        "/tokens adjust",
        "console-form@example.com",
        "1.5",
        "for the test",
        "2k",
        "as UADMIN2",
        "2",
        "",
        "not needed after all",
        "quit",
    )
    out = io.StringIO()
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(lines)

    run_console(TokensService(settings, engine), "UADMIN1", read=read, out=out)
    shown = out.getvalue()
    assert "== Adjust tokens ==" in shown and "! delta:" in shown
    assert [p.split(" ")[0] for p in prompts[1:5]] == ["1.", "2.", "3.", "2."]
    assert "request #" in shown and "+2,000 tokens" in shown
    assert "[2] Reject…" in shown and "! reason: A rejection needs a reason" in shown
    assert "You rejected" in shown and "not needed after all" in shown.split("You rejected")[1]
