"""A stateful property test: usage, failures, drift, requests and decisions interleaved on the real database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text

from core.domain.approvals import Person, RequestKind, RequestStatus
from core.domain.errors import InvalidAdjustmentError, RequestRefusedError
from core.services.service import TokensService
from core.settings import Settings
from core.store.balances import compute_balance
from tests.support.databases import SCHEMA
from tests.support.ledger import BASE_TIME, add_usage, add_user, remaining, spend

ASKER = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
APPROVER = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")
MAX_ADJUSTMENT = 50_000
# A tier amount an adjustment can reach: an approved grant of it must never pass for the initial grant.
TIER_GRANT = 40_000


@dataclass
class UserModel:
    remaining: int
    drift: int  # profile remaining minus the ledger formula: what a correction removes
    ledger_rows: int
    setup_row: uuid.UUID | None


@dataclass
class RequestModel:
    id: int
    user: uuid.UUID
    kind: RequestKind
    delta: int | None
    expires_at: datetime
    ledger_rows_at_proposal: int
    status: RequestStatus = RequestStatus.PENDING


def machine(engine: Engine, base: Settings) -> type[RuleBasedStateMachine]:
    settings = base.model_copy(
        update={
            "tokens_approvals_channel": "CAPPROVALS",
            "tokens_max_adjustment": MAX_ADJUSTMENT,
            "tokens_tier_grants": {"monthly": TIER_GRANT},
        }
    )

    class Approvals(RuleBasedStateMachine):
        users = Bundle("users")
        requests = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            self.now = datetime.now(BASE_TIME.tzinfo)
            self.service = TokensService(settings, engine, clock=lambda: self.now)
            self.model: dict[uuid.UUID, UserModel] = {}
            self.open: dict[int, RequestModel] = {}

        @rule(target=users, grant=st.integers(1_000, 200_000))
        def new_user(self, grant: int) -> uuid.UUID:
            with engine.begin() as conn:
                user = add_user(conn, remaining=grant)
                row = add_usage(
                    conn, user, tokens=grant, action="admin_grant", model=None, metadata={"by": "signup"}
                )
            self.model[user] = UserModel(remaining=grant, drift=0, ledger_rows=1, setup_row=row)
            return user

        @rule(target=users)
        def new_member(self) -> uuid.UUID:
            """A monthly member whose tier grant the product never logged: the tier gives the initial grant."""
            with engine.begin() as conn:
                user = add_user(conn, remaining=TIER_GRANT, tier="monthly")
            self.model[user] = UserModel(remaining=TIER_GRANT, drift=0, ledger_rows=0, setup_row=None)
            return user

        @rule(user=users, tokens=st.integers(1, 80_000))
        def usage(self, user: uuid.UUID, tokens: int) -> None:
            tokens = min(tokens, self.model[user].remaining)
            if tokens:
                with engine.begin() as conn:
                    spend(conn, user, tokens)
                self.model[user].remaining -= tokens
                self.model[user].ledger_rows += 1

        @rule(user=users, tokens=st.integers(1, 80_000))
        def failed_operation(self, user: uuid.UUID, tokens: int) -> None:
            with engine.begin() as conn:
                add_usage(conn, user, tokens=tokens, success=False, error="upstream 500", at=self.now)
            self.model[user].ledger_rows += 1

        @rule(user=users, tokens=st.integers(1, 20_000))
        def charged_without_ledger_row(self, user: uuid.UUID, tokens: int) -> None:
            """The drift the guide describes: the product lowered the balance but logged nothing."""
            tokens = min(tokens, self.model[user].remaining)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining"
                        " - :t WHERE user_id = :u"
                    ),
                    {"t": tokens, "u": user},
                )
            self.model[user].remaining -= tokens
            self.model[user].drift -= tokens

        @rule(target=requests, user=users, delta=st.one_of(st.integers(-70_000, 70_000), st.just(TIER_GRANT)))
        def ask(self, user: uuid.UUID, delta: int) -> object:
            current = self.model[user].remaining
            if delta == 0 or abs(delta) > MAX_ADJUSTMENT or current + delta < 0:
                with pytest.raises(InvalidAdjustmentError):
                    self.service.request_adjustment(ASKER, user, delta, "property")
                return multiple()
            request = self.service.request_adjustment(ASKER, user, delta, "property")
            assert request.resulting_balance == current + delta
            self.open[request.id] = RequestModel(
                request.id,
                user,
                RequestKind.ADJUSTMENT,
                delta,
                request.expires_at,
                self.model[user].ledger_rows,
            )
            return request.id

        @rule(target=requests, user=users)
        def propose_correction(self, user: uuid.UUID) -> object:
            report = self.service.reconcile("UADMIN1", user)
            assert report.balance.remaining_discrepancy == self.model[user].drift
            if not self.model[user].drift:
                with pytest.raises(InvalidAdjustmentError):
                    self.service.propose_correction(ASKER, user, None, report.snapshot)
                return multiple()
            request = self.service.propose_correction(ASKER, user, None, report.snapshot)
            self.open[request.id] = RequestModel(
                request.id,
                user,
                RequestKind.CORRECTION,
                None,
                request.expires_at,
                self.model[user].ledger_rows,
            )
            return request.id

        @rule(request_id=requests, by_requester=st.booleans())
        def approve(self, request_id: int, by_requester: bool) -> None:
            request = self.open[request_id]
            user = self.model[request.user]
            if request.status is not RequestStatus.PENDING or by_requester:
                with pytest.raises(RequestRefusedError):
                    self.service.approve(ASKER if by_requester else APPROVER, request_id)
                return
            if self.now >= request.expires_at:
                assert self.service.approve(APPROVER, request_id).outcome is RequestStatus.EXPIRED
                request.status = RequestStatus.EXPIRED
                return
            if request.kind is RequestKind.ADJUSTMENT:
                assert request.delta is not None
                if user.remaining + request.delta < 0:
                    with pytest.raises(InvalidAdjustmentError):
                        self.service.approve(APPROVER, request_id)
                    return
                decision = self.service.approve(APPROVER, request_id)
                assert decision.outcome is RequestStatus.APPLIED
                assert (decision.request.balance_before, decision.request.balance_after) == (
                    user.remaining,
                    user.remaining + request.delta,
                )
                user.remaining += request.delta
                user.ledger_rows += 1
                request.status = RequestStatus.APPLIED
            elif user.ledger_rows != request.ledger_rows_at_proposal:
                assert self.service.approve(APPROVER, request_id).outcome is RequestStatus.STALE
                request.status = RequestStatus.STALE
            else:
                assert self.service.approve(APPROVER, request_id).outcome is RequestStatus.APPLIED
                user.remaining -= user.drift
                user.drift = 0
                request.status = RequestStatus.APPLIED

        @rule(request_id=requests, cancel=st.booleans())
        def withdraw(self, request_id: int, cancel: bool) -> None:
            """Reject (by the approver) or cancel (by the requester): closes a pending request, writes no balance."""
            request = self.open[request_id]
            decide = (
                (lambda: self.service.cancel(ASKER, request_id))
                if cancel
                else (lambda: self.service.reject(APPROVER, request_id, "property"))
            )
            if request.status is not RequestStatus.PENDING:
                with pytest.raises(RequestRefusedError):
                    decide()
                return
            expected = RequestStatus.CANCELLED if cancel else RequestStatus.REJECTED
            if self.now >= request.expires_at:
                expected = RequestStatus.EXPIRED
            assert decide().outcome is expected
            request.status = RequestStatus(expected.value)

        @rule(hours=st.integers(1, 30))
        def time_passes(self, hours: int) -> None:
            self.now += timedelta(hours=hours)
            expired = {r.id for r in self.service.expire_due()}
            due = {
                r.id
                for r in self.open.values()
                if r.status is RequestStatus.PENDING and r.expires_at <= self.now
            }
            assert due <= expired
            for request_id in expired & set(self.open):
                self.open[request_id].status = RequestStatus.EXPIRED

        def teardown(self) -> None:
            """Close what this example left open, so other tests' request lists stay theirs."""
            for request in self.open.values():
                if request.status is RequestStatus.PENDING:
                    self.service.cancel(ASKER, request.id)

        @invariant()
        def balances_follow_the_ledger(self) -> None:
            with engine.connect() as conn:
                shape = self.service.shape(conn)
                for user_id, user in self.model.items():
                    balance = compute_balance(conn, shape, settings, user_id)
                    assert remaining(conn, user_id) == user.remaining >= 0
                    assert balance.remaining_discrepancy == user.drift
                    assert balance.ledger_rows == user.ledger_rows

        @invariant()
        def every_admin_row_is_traceable_to_one_approved_request(self) -> None:
            if not self.model:
                return
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT t.id, t.metadata->>'request_id' AS request_id, t.tokens_used, t.action_type,"
                        f" (SELECT count(*) FROM {SCHEMA}.approval_requests r WHERE r.ledger_row_id = t.id::text"
                        "  AND r.status = 'applied' AND r.id::text = t.metadata->>'request_id') AS requests"
                        " FROM token_usage t WHERE t.user_id = ANY(:users)"
                        " AND t.action_type IN ('admin_grant', 'admin_deduct')"
                    ),
                    {"users": list(self.model)},
                ).all()
                statuses = dict(
                    conn.execute(
                        text(f"SELECT id, status FROM {SCHEMA}.approval_requests WHERE id = ANY(:ids)"),
                        {"ids": list(self.open)},
                    ).all()
                )
            setup = {user.setup_row for user in self.model.values()}
            traced = [row for row in rows if row.id not in setup]
            assert all(row.requests == 1 for row in traced)
            for row in traced:
                request = self.open[int(row.request_id)]
                assert request.delta is not None and row.tokens_used == abs(request.delta)
                assert row.action_type == ("admin_grant" if request.delta > 0 else "admin_deduct")
            applied_adjustments = [
                r
                for r in self.open.values()
                if r.kind is RequestKind.ADJUSTMENT and r.status is RequestStatus.APPLIED
            ]
            assert len(traced) == len(applied_adjustments)
            assert statuses == {r.id: r.status.value for r in self.open.values()}

    return Approvals


def test_interleaved_operations_keep_balances_on_the_ledger_formula(
    settings: Settings, engine: Engine
) -> None:
    """After every step: balances equal the formula (less known drift), none is negative, admin rows trace to requests."""
    run_state_machine_as_test(
        machine(engine, settings),
        settings=hypothesis_settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
