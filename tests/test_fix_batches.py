"""Batch fixes in a database of their own: one approval for thousands of users applied by two workers at
once, each item once in its own transaction; staleness judged per user at apply time; and a worker killed
with SIGKILL mid-batch whose work another process resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.domain.approvals import RequestStatus
from core.domain.errors import ProductDataError
from core.domain.fix_batches import RECONCILED, ItemState
from core.domain.fixes import Cause
from core.domain.models import Verdict
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fix_data import narrow_row, narrow_user, seed_cause
from tests.support.fixes import APPROVER, ASKER, dump_of, inserted_only, item_rows
from tests.support.ledger import spend
from tests.test_odd_products_core import NARROW_PRODUCT, product

ROOT = Path(__file__).resolve().parent.parent


def batch_settings(url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        tokens_admins=["UADMIN1", "UADMIN2"],
        tokens_approvals_channel="CAPPROVALS",
    )


@pytest.fixture
def batch_url(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, "tokens_fix_batch") as url:
        yield url


@pytest.fixture
def batch_engine(batch_url: str) -> Iterator[Engine]:
    engine = make_engine(batch_url)
    yield engine
    engine.dispose()


@pytest.fixture
def service(batch_url: str, batch_engine: Engine) -> TokensService:
    return TokensService(batch_settings(batch_url), batch_engine)


def interrupted(service: TokensService) -> list[int]:
    """The fixes a scheduled run would resume: asked a few minutes on, when any worker is long gone."""
    later = datetime.now(UTC) + timedelta(minutes=5)
    return TokensService(service.settings, service.engine, clock=lambda: later).interrupted_fixes()


def reversals_per_user(engine: Engine) -> dict[str, int]:
    """How many rows the bot wrote to reverse a duplicate, per user."""
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT user_id::text, count(*) FROM token_usage WHERE metadata ? 'reverses' GROUP BY user_id"
                )
            ).all()
        )


def audited(engine: Engine, request_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    f"SELECT details->>'user_id' FROM {SCHEMA}.audit_log"
                    " WHERE request_id = :r AND event = 'fix_applied'"
                ),
                {"r": request_id},
            ).scalars()
        )


def apply_with_two_workers(url: str, request_id: int) -> None:
    """Two workers, each with its own engine, applying the same request at once until nothing is left."""
    start = threading.Barrier(2)
    finished: list[int] = []

    def worker() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            own = TokensService(batch_settings(url), engine)
            start.wait()
            finished.append(own.apply_fix(request_id, limit=10_000).applied)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(finished) == 2, "a worker failed"


def test_a_batch_of_3000_users_is_one_approval_and_two_workers_apply_each_item_once_verified(
    batch_url: str, service: TokensService, batch_engine: Engine
) -> None:
    with batch_engine.begin() as conn:
        users = seed_cause(conn, "duplicates", "dup", 3_000)
    before = dump_of(batch_engine, users)
    assert len(before) == 4 * 3_000

    request = service.propose_batch(ASKER, Cause.DUPLICATES, 0)
    assert request.fix is not None and request.fix.is_batch
    assert (request.fix.users, request.fix.ledger_rows) == (3_000, 3_000)
    assert request.fix.tokens == sum(1_000 + g for g in range(1, 3_001))
    assert (
        request.fix.largest[0].tokens == 4_000 and request.fix.remaining_up == request.fix.remaining_down == 0
    )
    assert [i.state for i in service.fix_items("UADMIN1", request.id)] == [ItemState.PENDING] * 3_000
    decision = service.approve(APPROVER, request.id)
    assert decision.outcome is RequestStatus.APPLYING
    assert interrupted(service) == [request.id]

    apply_with_two_workers(batch_url, request.id)
    applied = service.fix_progress(request.id)
    assert (applied.applied, applied.pending, applied.stale, applied.failed) == (3_000, 0, 0, 0)
    closed, progress = service.finish_fix(request.id)

    assert closed is not None and closed.outcome is RequestStatus.APPLIED
    assert (
        progress.total,
        progress.applied,
        progress.reconciled,
        progress.differing,
        progress.unverified,
    ) == (
        3_000,
        3_000,
        3_000,
        0,
        0,
    )
    assert progress.verified and progress.done and progress.problems == ()
    assert interrupted(service) == []
    assert service.finish_fix(request.id)[0] is None
    new = inserted_only(before, dump_of(batch_engine, users))
    assert len(new) == request.fix.ledger_rows
    assert reversals_per_user(batch_engine) == dict.fromkeys(users, 1)
    items = item_rows(batch_engine, SCHEMA, request.id)
    assert {(i.state, i.verified, i.verification) for i in items} == {
        (ItemState.APPLIED.value, True, RECONCILED)
    }
    assert {row for i in items for row in i.ledger_row_ids} == new
    assert sorted(audited(batch_engine, request.id)) == sorted(users)
    assert service.discrepancies("UADMIN1", 0).total == 0


def test_items_whose_user_moved_since_the_proposal_end_stale_and_keep_their_new_balance(
    service: TokensService, batch_engine: Engine
) -> None:
    """Usage written for some users and another's profile changed after the proposal: those items are
    stale, with the reason, and nothing is written for them; the rest are applied and reconciled."""
    with batch_engine.begin() as conn:
        users = seed_cause(conn, "failed-charged", "stale", 40)
    request = service.propose_batch(ASKER, Cause.FAILED_CHARGED, 0)
    with batch_engine.begin() as conn:
        for user in users[:3]:
            spend(conn, user, 500)
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining + 7"
                " WHERE user_id = :u"
            ),
            {"u": users[3]},
        )
    moved = {u: service.check("UADMIN1", u).balance for u in users[:4]}
    before = dump_of(batch_engine, users)
    service.approve(APPROVER, request.id)
    service.apply_fix(request.id, limit=100)
    closed, progress = service.finish_fix(request.id)

    assert closed is not None
    assert (progress.total, progress.applied, progress.stale, progress.reconciled) == (40, 36, 4, 36)
    assert inserted_only(before, dump_of(batch_engine, users)) == set()
    items = {i.user_id: i for i in item_rows(batch_engine, SCHEMA, request.id)}
    for user in users[:3]:
        assert items[user].state == ItemState.STALE.value and "ledger changed" in items[user].outcome
    assert items[users[3]].state == ItemState.STALE.value and "profile" in items[users[3]].outcome
    assert {p.user.user_id for p in progress.problems} == set(users[:4])
    for user, balance in moved.items():
        now = service.check("UADMIN1", user).balance
        assert (now.current_remaining, now.current_used) == (balance.current_remaining, balance.current_used)
        assert items[user].ledger_row_ids is None and items[user].before_image is None
    assert all(service.check("UADMIN1", u).verdict is Verdict.RECONCILED for u in users[4:])


SLOW_WORKER = """
import os, sys, time
from core.services.service import TokensService
from core.store.db import make_engine
from tests.test_fix_batches import batch_settings

url, request_id = os.environ["BATCH_URL"], int(sys.argv[1])
service = TokensService(batch_settings(url), make_engine(url, pool_size=1))
while service.apply_fix(request_id, limit=1).pending:
    time.sleep(0.02)
"""


def test_a_batch_killed_mid_way_resumes_elsewhere_and_applies_each_item_once(
    batch_url: str, service: TokensService, batch_engine: Engine
) -> None:
    """SIGKILL a process applying a batch one item at a time: every item it marked applied has its rows
    and no other has any; resumed by another process, the batch completes with each item once."""
    with batch_engine.begin() as conn:
        users = seed_cause(conn, "duplicates", "kill", 200)
    request = service.propose_batch(ASKER, Cause.DUPLICATES, 0)
    service.approve(APPROVER, request.id)
    worker = subprocess.Popen(
        [sys.executable, "-c", SLOW_WORKER, str(request.id)],
        cwd=ROOT,
        env={**os.environ, "BATCH_URL": batch_url, "PYTHONPATH": str(ROOT)},
    )
    try:
        while service.fix_progress(request.id).applied < 20:
            assert worker.poll() is None, "the worker stopped before it was killed"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL

    left = service.fix_progress(request.id)
    assert 20 <= left.applied < 200 and left.pending == 200 - left.applied
    assert interrupted(service) == [request.id]
    items = item_rows(batch_engine, SCHEMA, request.id)
    written = reversals_per_user(batch_engine)
    assert {i.user_id for i in items if i.state == ItemState.APPLIED.value} == set(written)
    assert set(written.values()) == {1}

    service.apply_fix(request.id, limit=1_000)
    closed, progress = service.finish_fix(request.id)

    assert closed is not None and (progress.applied, progress.reconciled, progress.pending) == (200, 200, 0)
    assert reversals_per_user(batch_engine) == dict.fromkeys(users, 1)
    assert sorted(audited(batch_engine, request.id)) == sorted(users)


def test_a_batch_leaves_out_at_proposal_the_users_whose_rows_the_product_would_refuse(
    server_url: str,
) -> None:
    """A duplicates batch on a product whose CHECK list lacks the deduction type: one plan of each row
    shape is rehearsed when proposed, so the repeated grant (reversed by a deduction row) is left out and
    the usage reversal (its own action type) goes ahead; a batch of refused rows only is refused whole."""
    with product(server_url, NARROW_PRODUCT) as (url, engine):
        with engine.begin() as conn:
            usage = narrow_user(conn, remaining=100_000 - 50_000, used=50_000)
            narrow_row(conn, usage, "admin_grant", 100_000, 0)
            narrow_row(conn, usage, "chat", 50_000, 50)
            narrow_row(conn, usage, "chat", 50_000, 51)
            grants = narrow_user(conn, remaining=120_000, used=0)
            for second in (0, 600, 601):
                narrow_row(conn, grants, "admin_grant", 100_000 if second == 0 else 20_000, second)
        service = TokensService(batch_settings(url), engine)
        before = dump_of(engine, [usage, grants])
        request = service.propose_batch(ASKER, Cause.DUPLICATES, 0)
        assert [i.user.user_id for i in service.fix_items("UADMIN1", request.id)] == [usage]
        service.approve(APPROVER, request.id)
        service.apply_fix(request.id, limit=10)
        closed, progress = service.finish_fix(request.id)

        assert closed is not None
        assert (progress.applied, progress.failed, progress.reconciled) == (1, 0, 1)
        [new] = inserted_only(before, dump_of(engine, [usage, grants]))
        assert before.keys() | {new} == dump_of(engine, [usage, grants]).keys()
        assert service.check("UADMIN1", grants).balance.remaining_discrepancy == -20_000
        with pytest.raises(ProductDataError, match=r"CHECK constraint.*admin_deduct"):
            service.propose_batch(ASKER, Cause.DUPLICATES, 0)
