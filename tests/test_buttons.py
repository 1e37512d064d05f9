"""Button values are validated into typed payloads: forged or damaged ones get a clear reply naming the
command to run instead, never "Something went wrong", and never replace the message they were on."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from bot import buttons
from bot.buttons import (
    BIGINT_MAX,
    MAX_PAGE,
    PAYLOADS,
    CheckPage,
    DamagedButtonError,
    HistoryPage,
    ProposeCorrection,
    Recompute,
    RequestButton,
    TopPage,
)
from bot.routes import reply_to_action
from bot.slack.console import ConsoleSlack
from core.services.service import TokensService
from core.settings import Settings
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient, reply_text

# The routes these tests drive never post: a console port that shows nothing.
NO_SLACK = ConsoleSlack(lambda banner, reply: None)

USER = "3f6c1a52-8d1e-4c1b-9a57-2f0e6a9d4b10"
# Per action id: forged values, each with the command the reply must point to.
FORGED: dict[str, tuple[str, list[Any]]] = {
    "check_page": (
        "/tokens check",
        [
            {"u": USER, "p": -1},
            {"u": USER, "p": 0},
            {"u": USER, "p": 10**30},
            {"u": USER, "p": "2"},
            {"u": USER, "p": 2.5},
            {"u": USER, "p": True},
            {"u": USER},
            {"p": 1},
            {"u": "", "p": 1},
            {"u": "x" * 129, "p": 1},
            {"u": "a\nb", "p": 1},
            {"u": "a\x00b", "p": 1},
            {"u": 42, "p": 1},
            {"u": USER, "p": 1, "g": -1},
            {"u": USER, "p": 1, "g": BIGINT_MAX + 1},
            {"u": USER, "p": 1, "g": "600000"},
            [USER, 1],
            "not json at all",
            "",
            "[" * 5000,
        ],
    ),
    "open_check": ("/tokens check", [{"u": None, "p": 1}]),
    "usage_chart": (
        "/tokens chart",
        [{"u": USER, "d": 0}, {"u": USER, "d": 367}, {"u": USER, "d": "90"}, {"u": USER}, {"d": 90}],
    ),
    "lowbalance_page": ("/tokens lowbalance", [{"t": -5, "p": 2}, {"t": 10_000}, {"t": 10**20, "p": 1}]),
    "discrepancies_page": (
        "/tokens discrepancies",
        [{"m": "100", "p": 2}, {"p": 2}, {"m": 100, "p": 2, "c": "dupes"}],
    ),
    "top_page": ("/tokens top", [{"n": -1, "p": 1}, {"n": 101, "p": 1}, {"n": 0, "p": 1}, {"p": 1}]),
    "approval_approve": ("/tokens requests", [{"r": 0}, {"r": -3}, {"r": "7"}, {"r": 2**63}, {}, 7]),
    "approval_reject": ("/tokens requests", [{"r": None}]),
    "approval_cancel": ("/tokens requests", [{"r": 1.0}]),
    "reconcile_propose": (
        "/tokens reconcile",
        [
            {"u": USER, "g": None, "n": -1, "t": None},
            {"u": USER, "g": None, "n": 3},
            {"u": USER, "g": None, "n": 3, "t": "yesterday"},
            {"u": USER, "g": -600_000, "n": 3, "t": None},
            {"u": USER, "g": None, "n": 3, "t": "0001-01-01T00:00:00+05:00"},
        ],
    ),
    "reconcile_recompute": ("/tokens reconcile", [{"g": 5}, {"u": USER, "g": 2**64}]),
    "history_page": ("/tokens history", [{"u": USER, "p": 0}, {"u": USER, "p": "2"}, {"p": 2}, {"u": USER}]),
    "fix_propose": (
        "/tokens check",
        [
            {"u": USER, "c": "dupes", "n": 3, "t": None},
            {"u": USER, "c": None, "n": 3, "t": None},
            {"u": USER, "c": "duplicates", "n": -1, "t": None},
            {"u": USER, "c": "duplicates", "n": 3},
        ],
    ),
    "fix_propose_batch": (
        "/tokens discrepancies",
        [{"c": "everything", "m": 100}, {"c": "duplicates", "m": -1}, {"m": 100}, {"c": "duplicates"}],
    ),
    "adjust_open": ("/tokens adjust", [{"u": ""}, {}, {"u": "a\x00b"}]),
}


def test_every_forged_button_value_gets_the_damaged_reply_over_slack(
    slack: SlackClient, fake_slack: FakeSlack
) -> None:
    """Each forged value of every button, clicked over signed HTTP, is answered to the clicker alone with
    "damaged" and the command to run instead; no apology, nothing replaced, nothing decided."""
    assert set(FORGED) == set(PAYLOADS)
    sent = []
    for action_id, (command, values) in FORGED.items():
        for value in values:
            raw = value if isinstance(value, str) else json.dumps(value)
            result, name = slack.click(action_id, raw, user="UADMIN2", channel="CAPPROVALS")
            assert result.status == 200, (action_id, value)
            sent.append((action_id, value, command, name))
    for action_id, value, command, name in sent:
        [body] = fake_slack.responses(name)
        text = reply_text(body)
        assert "damaged" in text and command in text, (action_id, value, text)
        assert "Something went wrong" not in text
        assert body["replace_original"] is False and body["response_type"] == "ephemeral", (action_id, value)


def test_page_numbers_past_the_last_are_clamped_not_refused() -> None:
    """A page number the bot could have written, however far past the end, reads as at most MAX_PAGE
    (the core then shows the last page); only a number below 1 or past bigint is damaged."""
    assert buttons.read(CheckPage, json.dumps({"u": USER, "p": 99_999})).p == MAX_PAGE
    assert buttons.read(TopPage, json.dumps({"n": 5, "p": BIGINT_MAX})).p == MAX_PAGE
    assert buttons.read(CheckPage, json.dumps({"u": USER, "p": 3, "g": None})).p == 3
    with pytest.raises(DamagedButtonError):
        buttons.read(CheckPage, json.dumps({"u": USER, "p": BIGINT_MAX + 1}))


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_reading_any_text_as_any_button_gives_its_payload_or_a_damaged_refusal(value: str) -> None:
    """No text makes a payload model raise anything but DamagedButtonError, whose text names a command."""
    for model in set(PAYLOADS.values()):
        try:
            buttons.read(model, value)
        except DamagedButtonError as exc:
            assert "damaged" in str(exc) and "/tokens" in str(exc)


user_ids = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=buttons.MAX_USER_ID_LENGTH
)
amounts = st.integers(min_value=0, max_value=BIGINT_MAX)


@given(
    st.one_of(
        st.builds(CheckPage, u=user_ids, p=st.integers(1, MAX_PAGE), g=st.none() | amounts),
        st.builds(RequestButton, r=st.integers(1, BIGINT_MAX)),
        st.builds(HistoryPage, u=user_ids, p=st.integers(1, MAX_PAGE)),
        st.builds(Recompute, u=user_ids, g=st.none() | amounts),
        st.builds(
            ProposeCorrection,
            u=user_ids,
            g=st.none() | amounts,
            n=amounts,
            t=st.none() | st.datetimes() | st.datetimes(timezones=st.timezones()),
        ),
    )
)
def test_every_value_the_bot_writes_reads_back_as_the_same_payload(payload: buttons.ButtonValue) -> None:
    """What a renderer puts on a button (any product user id, grant, snapshot) is read back unchanged and
    fits Slack's 2,000-character limit on a button's value."""
    value = payload.encode()
    assert len(value) <= buttons.MAX_VALUE_LENGTH
    assert buttons.read(type(payload), value) == payload


def test_an_unexpected_error_behind_a_good_button_is_logged_and_the_user_told(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure nobody planned for, behind a valid value, still reaches the log with its traceback and
    the clicker as a plain apology; the damaged reply is only for damaged values."""

    class Broken(TokensService):
        def check(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the disk caught fire")

    service = Broken(settings, engine)
    with caplog.at_level(logging.ERROR):
        answer = reply_to_action(
            service, "UADMIN1", "check_page", CheckPage(u=USER, p=2).encode(), slack=NO_SLACK
        )
    assert "Something went wrong" in answer.reply.text
    assert "unexpected error while answering action 'check_page'" in caplog.text
    assert any(r.exc_info and "the disk caught fire" in str(r.exc_info[1]) for r in caplog.records)
