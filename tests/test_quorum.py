"""Quorum (TOKENS_QUORUM): distinct approvers by size, one vote each, applied once by the vote that completes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text

from bot.render.history import render_history
from core.domain.approvals import Person, RequestStatus
from core.domain.errors import RequestRefusedError
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user, remaining_of
from tests.support.slack_http import SlackClient, ask, buttons, press, reply_text

REQUESTER = Person(slack_id="UADMIN1", name="Ada", email="ada@ops.example")
VOTERS = [
    Person(slack_id=f"UAPPROVER{i}", name=f"Approver {i}", email=f"a{i}@ops.example") for i in range(1, 4)
]


@pytest.fixture
def quorum_settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        tokens_admins=[REQUESTER.slack_id],
        tokens_approvers=[REQUESTER.slack_id, *(v.slack_id for v in VOTERS)],
        tokens_approvals_channel="CAPPROVALS",
        tokens_quorum={0: 1, 1_000: 2, 1_000_000: 3},
    )


@pytest.fixture
def services(quorum_settings: Settings, database_url: str) -> Iterator[list[TokensService]]:
    """Two services on engines of their own: two bots' worth of connections to one database."""
    engines = [make_engine(database_url) for _ in range(2)]
    yield [TokensService(quorum_settings, e) for e in engines]
    for e in engines:
        e.dispose()


def _ledger_rows(engine: Engine, request_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM token_usage WHERE metadata->>'request_id' = :r"),
                {"r": str(request_id)},
            ).scalar_one()
        )


def test_quorum_counts_distinct_approvers_and_the_last_vote_applies_once_under_fifty_concurrent_clicks(
    services: list[TokensService], engine: Engine
) -> None:
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000, email="quorum@example.com")
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
    first, second = services
    small = first.request_adjustment(REQUESTER, "quorum@example.com", 999, "under the first step")
    big = first.request_adjustment(REQUESTER, "quorum@example.com", 5_000, "needs two")
    assert (small.quorum, big.quorum) == (1, 2)

    vote = first.approve(VOTERS[0], big.id)
    assert vote.outcome is RequestStatus.PENDING
    assert [v.voter.slack_id for v in vote.request.votes] == [VOTERS[0].slack_id]
    assert _ledger_rows(engine, big.id) == 0 and remaining_of(engine, user) == 600_000
    with pytest.raises(RequestRefusedError, match="already approved request"):
        second.approve(VOTERS[0], big.id)
    with pytest.raises(RequestRefusedError, match="yourself"):
        second.approve(REQUESTER, big.id)

    start = threading.Barrier(50)

    def click(i: int) -> RequestStatus | str:
        start.wait()
        try:
            return services[i % 2].approve(VOTERS[1 + i % 2], big.id).outcome
        except RequestRefusedError as refused:
            return str(refused)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(click, range(50)))
    assert outcomes.count(RequestStatus.APPLIED) == 1
    assert all("already approved" in str(o) for o in outcomes if o is not RequestStatus.APPLIED)
    assert _ledger_rows(engine, big.id) == 1 and remaining_of(engine, user) == 605_000
    with engine.connect() as conn:
        votes = conn.execute(
            text(f"SELECT count(*) FROM {SCHEMA}.approval_votes WHERE request_id = :r"), {"r": big.id}
        ).scalar_one()
        approvals = conn.execute(
            text("SELECT metadata->'approvals' FROM token_usage WHERE metadata->>'request_id' = :r"),
            {"r": str(big.id)},
        ).scalar_one()
    assert votes == 2 and len(approvals) == 2 and approvals[0]["slack_id"] == VOTERS[0].slack_id

    assert first.approve(VOTERS[2], small.id).outcome is RequestStatus.APPLIED


def test_a_rejection_by_any_approver_ends_a_request_whatever_votes_it_had(
    services: list[TokensService], engine: Engine
) -> None:
    with engine.begin() as conn:
        user = add_user(conn, remaining=2_000_000, email="veto@example.com")
        add_usage(conn, user, tokens=2_000_000, action="admin_grant", model=None)
    service = services[0]
    request = service.request_adjustment(REQUESTER, "veto@example.com", -1_500_000, "large deduction")
    assert request.quorum == 3
    assert service.approve(VOTERS[0], request.id).outcome is RequestStatus.PENDING
    # The Home tab lists it as waiting for the votes still missing, not for the one given.
    assert request.id not in [r.id for r in service.home(VOTERS[0].slack_id).waiting]
    assert request.id in [r.id for r in service.home(VOTERS[2].slack_id).waiting]
    assert service.approve(VOTERS[1], request.id).request.votes_missing == 1
    assert service.reject(VOTERS[2], request.id, "not this week").outcome is RequestStatus.REJECTED
    history = service.history(REQUESTER.slack_id, "veto@example.com")
    events = [(e.event.value, e.actor.slack_id) for e in history.entries]
    assert events[:3] == [
        ("rejected", VOTERS[2].slack_id),
        ("voted", VOTERS[1].slack_id),
        ("voted", VOTERS[0].slack_id),
    ]
    assert "an approval short of the quorum" in reply_text(render_history(history).as_kwargs())
    with pytest.raises(RequestRefusedError, match="already rejected"):
        service.approve(VOTERS[2], request.id)
    assert _ledger_rows(engine, request.id) == 0 and remaining_of(engine, user) == 2_000_000


def test_over_two_bots_the_first_vote_changes_nothing_and_fifty_concurrent_clicks_apply_once(
    server_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two `tokens-bot serve` process trees on one database, TOKENS_QUORUM asking two approvers from 1,000
    tokens: the message shows "1 of 2 approvals" after the first vote, and 50 clicks by three approvers
    over both bots apply the grant once."""
    with scratch_database(server_url, "tokens_quorum_http") as url:
        engine = make_engine(url)
        with engine.begin() as conn:
            user = add_user(conn, remaining=600_000, email="quorum-http@example.com")
            add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
        env = bot_env(
            url,
            fake_slack.api_url,
            TOKENS_APPROVERS="UADMIN1,UADMIN2,UAPPROVER3,UAPPROVER4",
            TOKENS_QUORUM='{"0": 1, "1000": 2}',
        )
        logs = tmp_path_factory.mktemp("quorum-bots")
        bots = [BotProcess(env, logs / f"bot{i}.log") for i in range(2)]
        try:
            clients = [SlackClient(b.url, SIGNING_SECRET, fake_slack.url) for b in bots]
            start = len(fake_slack.calls)
            asked = ask(clients[0], fake_slack, "adjust quorum-http@example.com +5,000 two keys")
            number = int(asked["text"].split("request #")[1].split(" ")[0])
            [posted] = fake_slack.wait_for(
                lambda c: (
                    fake_slack.calls.index(c) >= start
                    and c.method == "chat.postMessage"
                    and f"request #{number}:" in str(c.body.get("text"))
                )
            )
            value = buttons(posted.body)["approval_approve"]
            first = press(clients[1], fake_slack, "approval_approve", value, user="UADMIN2")
            assert "it needs 1 more approval" in first["text"]
            [shown] = fake_slack.wait_for(
                lambda c: c.method == "chat.update" and c.body.get("ts") == posted.response["ts"]
            )
            assert "1 of 2 approvals" in reply_text(shown.body)
            assert _ledger_rows(engine, number) == 0 and remaining_of(engine, user) == 600_000

            clickers = ["UADMIN2", "UAPPROVER3", "UAPPROVER4"]
            barrier = threading.Barrier(50)

            def click(i: int) -> str:
                barrier.wait()
                result, name = clients[i % 2].click("approval_approve", value, user=clickers[i % 3])
                assert result.status == 200
                return str(fake_slack.responses(name, timeout=30)[0]["text"])

            with ThreadPoolExecutor(50) as pool:
                replies = list(pool.map(click, range(50)))
            assert sum("balance went from" in r for r in replies) == 1
            assert _ledger_rows(engine, number) == 1 and remaining_of(engine, user) == 605_000
            with engine.connect() as conn:
                votes = conn.execute(
                    text(f"SELECT count(*) FROM {SCHEMA}.approval_votes WHERE request_id = :r"), {"r": number}
                ).scalar_one()
            assert votes == 2
        finally:
            for b in bots:
                b.stop()
            engine.dispose()
