"""Exactly once under concurrency: many clicks on two running bots, and adjustments racing the product's usage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from core.domain.approvals import Person, RequestStatus
from core.domain.models import Balance
from core.services.service import TokensService
from core.settings import Settings
from core.store.balances import compute_balance
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import SCHEMA
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user, remaining, spend
from tests.support.slack_http import SlackClient, buttons

APPROVERS = "UADMIN1,UADMIN2,UAPPROVER3,UAPPROVER4"


@pytest.fixture(scope="module")
def two_bots(
    database_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[SlackClient]]:
    """Two `tokens-bot serve` process trees (two gunicorn workers each) on one database, four approvers."""
    env = bot_env(database_url, fake_slack.api_url, TOKENS_APPROVERS=APPROVERS)
    logs = tmp_path_factory.mktemp("two-bots")
    processes = [BotProcess(env, logs / f"bot{i}.log") for i in range(2)]
    yield [SlackClient(p.url, SIGNING_SECRET, fake_slack.url) for p in processes]
    for process in processes:
        process.stop()


def test_fifty_simultaneous_approve_clicks_on_two_bots_apply_once(
    two_bots: list[SlackClient], fake_slack: FakeSlack, engine: Engine
) -> None:
    """50 Approve clicks by four people over two bot processes: one ledger row, one balance change, one update."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000, email="race@example.com")
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None)
    result, name = two_bots[0].command("adjust race@example.com +12,345 race test", user="UADMIN1")
    assert result.status == 200
    [created] = fake_slack.responses(name)
    number = int(created["text"].split("request #")[1].split(" ")[0])
    [posted] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and f"request #{number}:" in str(c.body.get("text"))
            # Request numbers restart in every test's database; the fake Slack records every test's calls.
            and "race@example.com" in str(c.body.get("text"))
        )
    )
    value = buttons(posted.body)["approval_approve"]
    clickers = ["UADMIN2", "UAPPROVER3", "UAPPROVER4", "UADMIN1", "UVIEWER"]
    start = threading.Barrier(50)

    def press(i: int) -> tuple[int, str]:
        start.wait()
        result, name = two_bots[i % 2].click("approval_approve", value, user=clickers[i % len(clickers)])
        return result.status, name

    with ThreadPoolExecutor(50) as pool:
        pressed = list(pool.map(press, range(50)))
    assert {status for status, _ in pressed} == {200}
    replies = [fake_slack.responses(name, timeout=30)[0]["text"] for _, name in pressed]

    assert sum("You approved" in r for r in replies) == 1
    # The requester's clicks say "already approved" once it is, "You asked for request" before.
    assert sum("already approved by" in r or "You asked for request" in r for r in replies) == 39
    assert sum("Only tokens-bot approvers" in r for r in replies) == 10
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM token_usage WHERE user_id = :u AND metadata->>'request_id' = :r"),
            {"u": user, "r": str(number)},
        ).scalar_one()
        applied = conn.execute(
            text(f"SELECT count(*) FROM {SCHEMA}.audit_log WHERE request_id = :r AND event = 'applied'"),
            {"r": number},
        ).scalar_one()
        assert (rows, applied, remaining(conn, user)) == (1, 1, 612_345)
    ts = posted.response["ts"]
    fake_slack.wait_for(lambda c: c.method == "chat.update" and c.body.get("ts") == ts)
    assert len([c for c in fake_slack.calls if c.method == "chat.update" and c.body.get("ts") == ts]) == 1


def test_concurrent_adjustments_and_usage_keep_the_balance_equal_to_the_formula(
    settings: Settings, engine: Engine
) -> None:
    """Approvals racing the product's own usage writes on one user end exactly at the ledger formula."""
    service = TokensService(settings.model_copy(update={"tokens_approvals_channel": "CAPPROVALS"}), engine)
    with engine.begin() as conn:
        user = add_user(conn, remaining=1_000_000)
        add_usage(conn, user, tokens=1_000_000, action="admin_grant", model=None)
    asker = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
    approver = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")
    deltas = [5_000, -3_000, 7_500, -1_000, 2_000, -4_000, 10_000, -2_500, 1_234, -999]
    requests = [service.request_adjustment(asker, user, d, f"race {i}") for i, d in enumerate(deltas)]
    spends = [300 + i for i in range(40)]
    start = threading.Barrier(len(requests) + len(spends))

    def approve(request_id: int) -> None:
        start.wait()
        service.approve(approver, request_id)

    def use(tokens: int) -> None:
        start.wait()
        with engine.begin() as conn:
            spend(conn, user, tokens)

    with ThreadPoolExecutor(len(requests) + len(spends)) as pool:
        futures = [pool.submit(approve, r.id) for r in requests] + [pool.submit(use, t) for t in spends]
        for future in futures:
            future.result()

    with engine.connect() as conn:
        balance: Balance = compute_balance(conn, service.shape(conn), settings, user)
    assert balance.current_remaining == 1_000_000 + sum(deltas) - sum(spends)
    assert balance.remaining_discrepancy == 0 and balance.used_discrepancy == 0


def test_a_click_queued_behind_the_request_lock_is_judged_by_the_clock_when_it_decides(
    settings: Settings, engine: Engine
) -> None:
    """An approve that waited on the request's lock past its expiry finds it expired, not applied."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=10_000)
    now = [datetime.now(UTC)]
    service = TokensService(
        settings.model_copy(update={"tokens_approvals_channel": "CAPPROVALS"}), engine, clock=lambda: now[0]
    )
    asker = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
    approver = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")
    request = service.request_adjustment(asker, user, 1_000, "queued click")
    with ThreadPoolExecutor(1) as pool, engine.connect() as holder:
        holder.execute(
            text(f"SELECT 1 FROM {SCHEMA}.approval_requests WHERE id = :id FOR UPDATE"), {"id": request.id}
        )
        holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        click = pool.submit(service.approve, approver, request.id)
        deadline = time.monotonic() + 10
        while not _blocked_by(engine, holder_pid):
            assert time.monotonic() < deadline, "the approve never queued on the request lock"
            time.sleep(0.02)
        now[0] = request.expires_at + timedelta(seconds=1)
        holder.commit()
        decision = click.result(timeout=10)
    assert decision.outcome is RequestStatus.EXPIRED and decision.request.decided_at == now[0]
    with engine.connect() as conn:
        assert remaining(conn, user) == 10_000


def _blocked_by(engine: Engine, pid: int) -> bool:
    """Whether some session waits on a lock the backend `pid` holds."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid)))"
                ),
                {"pid": pid},
            ).scalar_one()
        )
