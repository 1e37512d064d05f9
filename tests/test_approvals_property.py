"""A stateful property test: usage, failures, drift, requests and decisions interleaved on the real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, text

from core.domain.approvals import Person, RequestKind, RequestStatus
from core.domain.errors import InvalidAdjustmentError, RequestRefusedError
from core.domain.fix_batches import RECONCILED, ItemState
from core.domain.fix_plans import FixPlan
from core.domain.fixes import Cause, FixKind
from core.domain.models import Verdict
from core.services.service import TokensService
from core.settings import Settings
from core.store.balances import compute_balance
from core.store.db import make_engine
from tests.support.databases import SCHEMA, scratch_database
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
    used_drift: int = 0  # profile used minus the ledger's successful usage

    @property
    def state(self) -> tuple[int, int, int]:
        """What any write to the user changes: a fix planned or verified at another state is stale."""
        return (self.ledger_rows, self.remaining, self.used_drift)


@dataclass
class RequestModel:
    id: int
    user: uuid.UUID
    kind: RequestKind
    delta: int | None
    expires_at: datetime
    ledger_rows_at_proposal: int
    status: RequestStatus = RequestStatus.PENDING
    fix_items: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """A fix's users and their state when it was proposed."""
    applied: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """A fix's applied users and their state right after their item was applied."""


# The rule that injects each cause a fix can close.
INJECT = {
    Cause.FAILED_CHARGED: "failed_operation_charged",
    Cause.DUPLICATES: "usage_logged_twice",
    Cause.UNLOGGED_GRANT: "grant_never_logged",
}

# What each action type the bot writes does to the expected balance (every other type is usage).
EXPECTED_SIGN = {"admin_grant": 1, "admin_deduct": -1}


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
            self.twin_hour = 0
            self.judged: dict[int, set[str]] = {}
            # Users a fix left verified as reconciled, and their state then.
            self.reconciled: dict[uuid.UUID, tuple[int, int, int]] = {}

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

        @rule(user=users, tokens=st.integers(1, 20_000))
        def failed_operation_charged(self, user: uuid.UUID, tokens: int) -> None:
            """The product charged an operation that failed: the profile is wrong."""
            tokens = min(tokens, self.model[user].remaining)
            with engine.begin() as conn:
                add_usage(conn, user, tokens=tokens, success=False, error="timeout", at=self.now)
                self.charge(conn, user, tokens)
            self.model[user].ledger_rows += 1
            self.model[user].remaining -= tokens
            self.model[user].drift -= tokens
            self.model[user].used_drift += tokens

        @rule(user=users, tokens=st.integers(1, 20_000))
        def usage_logged_twice(self, user: uuid.UUID, tokens: int) -> None:
            """One operation logged twice a second apart and charged once: the ledger is wrong."""
            tokens = min(tokens, self.model[user].remaining)
            if not tokens:
                return
            # An hour apart from any other write, so only these two rows are twins.
            self.twin_hour += 1
            at = BASE_TIME + timedelta(hours=self.twin_hour)
            with engine.begin() as conn:
                add_usage(conn, user, tokens=tokens, model="twin-model", at=at)
                add_usage(conn, user, tokens=tokens, model="twin-model", at=at + timedelta(seconds=1))
                self.charge(conn, user, tokens)
            self.model[user].ledger_rows += 2
            self.model[user].remaining -= tokens
            self.model[user].drift += tokens
            self.model[user].used_drift -= tokens

        @rule(user=users, tokens=st.one_of(st.integers(1, 20_000), st.just(TIER_GRANT)))
        def grant_never_logged(self, user: uuid.UUID, tokens: int) -> None:
            """The product raised the balance and logged nothing: the ledger misses a grant."""
            with engine.begin() as conn:
                self.charge(conn, user, -tokens, used=False)
            self.model[user].remaining += tokens
            self.model[user].drift += tokens

        def charge(self, conn: Connection, user: uuid.UUID, tokens: int, *, used: bool = True) -> None:
            conn.execute(
                text(
                    "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining"
                    " - :t, vibe_assistant_tokens_used = vibe_assistant_tokens_used + :u WHERE user_id = :id"
                ),
                {"t": tokens, "u": tokens if used else 0, "id": user},
            )

        @rule(target=requests, user=users)
        def propose_fix(self, user: uuid.UUID) -> object:
            """The check's Propose fix button, for the fix it recommends (if any)."""
            check = self.service.check("UADMIN1", user)
            option = next((o for o in check.fixes if o.recommended), None)
            if option is None or check.snapshot is None:
                return multiple()
            try:
                request = self.service.propose_fix(ASKER, user, option.cause, check.snapshot)
            except InvalidAdjustmentError as refusal:
                assert "TOKENS_MAX_ADJUSTMENT" in str(refusal)
                return multiple()
            return self.opened_fix(request.id, request.expires_at)

        @precondition(lambda self: self.drifting())
        @rule(
            target=requests,
            cause=st.sampled_from([Cause.FAILED_CHARGED, Cause.DUPLICATES, Cause.UNLOGGED_GRANT]),
        )
        def propose_batch(self, cause: Cause) -> object:
            """Propose fix for all users of a cause."""
            try:
                request = self.service.propose_batch(ASKER, cause, 0)
            except InvalidAdjustmentError as refusal:
                assert "nothing was proposed" in str(refusal) or "TOKENS_MAX_ADJUSTMENT" in str(refusal)
                return multiple()
            return self.opened_fix(request.id, request.expires_at)

        @rule(
            user=users,
            cause=st.sampled_from(list(INJECT)),
            tokens=st.integers(1, 20_000),
            batch=st.booleans(),
        )
        def cause_then_fix(self, user: uuid.UUID, cause: Cause, tokens: int, batch: bool) -> None:
            """A cause appears, and its fix (the user's, or every user's of that cause) is proposed, approved
            and applied with nothing in between."""
            getattr(self, INJECT[cause])(user, tokens)
            proposed = self.propose_batch(cause) if batch else self.propose_fix(user)
            if isinstance(proposed, int):
                self.approve(proposed, by_requester=False)
                self.apply_fix(proposed, limit=len(self.open[proposed].fix_items))

        def drifting(self) -> bool:
            """Whether some user differs from the ledger: only then may a batch find anyone to fix."""
            return any(u.drift or u.used_drift for u in self.model.values())

        def opened_fix(self, request_id: int, expires_at: datetime) -> int:
            users = [self.key(plan.user.user_id) for plan in self.plans(request_id).values()]
            self.open[request_id] = RequestModel(
                request_id,
                users[0],
                RequestKind.FIX,
                None,
                expires_at,
                0,
                fix_items={str(u): self.model[u].state for u in users},
            )
            return request_id

        def key(self, user_id: str) -> uuid.UUID:
            """The model's key of a user the bot names by id: every user a fix touches is one of ours."""
            [key] = [u for u in self.model if str(u) == user_id]
            return key

        def plans(self, request_id: int) -> dict[str, FixPlan]:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        f"SELECT user_id, plan FROM {SCHEMA}.fix_items WHERE request_id = :r ORDER BY position"
                    ),
                    {"r": request_id},
                ).all()
            return {row.user_id: FixPlan.model_validate(row.plan) for row in rows}

        @rule(request_id=requests, limit=st.integers(1, 4))
        def apply_fix(self, request_id: int, limit: int) -> None:
            """A worker applies a few items of an approved fix; the last one verifies and closes it."""
            request = self.open[request_id]
            if request.kind is not RequestKind.FIX:
                return
            before = self.service.fix_progress(request_id)
            progress = self.service.apply_fix(request_id, limit=limit)
            if request.status is not RequestStatus.APPLYING:
                assert progress == before
                return
            plans = self.plans(request_id)
            states = {i.user.user_id: i.state for i in self.service.fix_items("UADMIN1", request_id)}
            done = [u for u, state in states.items() if state is not ItemState.PENDING]
            fresh = [
                u for u in done if u not in request.applied and u not in self.judged.get(request_id, set())
            ]
            assert len(fresh) == min(limit, before.pending)
            for user_id in fresh:
                self.judged.setdefault(request_id, set()).add(user_id)
                user = self.model[self.key(user_id)]
                if user.state != request.fix_items[user_id]:
                    assert states[user_id] is ItemState.STALE
                    continue
                assert states[user_id] is ItemState.APPLIED
                self.follow_plan(user, plans[user_id])
                request.applied[user_id] = user.state
            if progress.pending:
                return
            decision, final = self.service.finish_fix(request_id)
            assert decision is not None and decision.outcome is RequestStatus.APPLIED
            request.status = RequestStatus.APPLIED
            assert final.applied == len(request.applied)
            for item in self.service.fix_items("UADMIN1", request_id):
                user_id = item.user.user_id
                if user_id not in request.applied:
                    continue
                user = self.model[self.key(user_id)]
                if user.state == request.applied[user_id]:
                    # Untouched since it was applied: the fix did what it promised.
                    assert item.verified is True, item.verification
                    if item.verification == RECONCILED:
                        self.reconciled[self.key(user_id)] = user.state

        def follow_plan(self, user: UserModel, plan: FixPlan) -> None:
            """The model's user after the plan's writes, computed from the rows and values it names."""
            expected = sum(EXPECTED_SIGN.get(e.action or "", -1) * e.tokens for e in plan.entries)
            usage = sum(e.tokens for e in plan.entries if (e.action or "") not in EXPECTED_SIGN)
            moved = plan.after.remaining - plan.before.remaining
            user.remaining += moved
            user.drift += moved - expected
            user.used_drift += plan.after.used - plan.before.used - usage
            user.ledger_rows += len(plan.entries)
            if plan.option.kind is FixKind.PROFILE_CORRECTION:
                assert (user.drift, user.used_drift) == (0, 0)

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
            model = self.model[user]
            assert report.balance.remaining_discrepancy == model.drift
            if (
                not (model.drift or model.used_drift)
                or model.remaining - model.drift < 0
                or max(abs(model.drift), abs(model.used_drift)) > MAX_ADJUSTMENT
            ):
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
            if request.kind is RequestKind.FIX:
                assert self.service.approve(APPROVER, request_id).outcome is RequestStatus.APPLYING
                request.status = RequestStatus.APPLYING
            elif request.kind is RequestKind.ADJUSTMENT:
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
            elif max(abs(user.drift), abs(user.used_drift)) > MAX_ADJUSTMENT:
                # The profile drifted further after the proposal: the limit is checked again when applied.
                with pytest.raises(InvalidAdjustmentError):
                    self.service.approve(APPROVER, request_id)
            else:
                assert self.service.approve(APPROVER, request_id).outcome is RequestStatus.APPLIED
                user.remaining -= user.drift
                user.drift = 0
                user.used_drift = 0
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
            """Empty the database: the next example's batches must see only its own users."""
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"TRUNCATE token_usage, user_profiles, auth.users, {SCHEMA}.approval_requests CASCADE"
                    )
                )

        @invariant()
        def balances_follow_the_ledger(self) -> None:
            with engine.connect() as conn:
                shape = self.service.shape(conn)
                for user_id, user in self.model.items():
                    balance = compute_balance(conn, shape, settings, user_id)
                    assert remaining(conn, user_id) == user.remaining >= 0
                    assert balance.remaining_discrepancy == user.drift
                    assert balance.used_discrepancy == user.used_drift
                    assert balance.ledger_rows == user.ledger_rows

        @invariant()
        def a_user_a_fix_reconciled_stays_reconciled_until_written_again(self) -> None:
            for user_id, state in self.reconciled.items():
                if self.model[user_id].state == state:
                    assert self.service.check("UADMIN1", user_id).verdict is Verdict.RECONCILED

        @invariant()
        def every_fix_row_belongs_to_one_applied_item_and_is_audited(self) -> None:
            """Rows are only inserted by a fix's applied items, each row by exactly one, each item audited once."""
            if not self.model:
                return
            with engine.connect() as conn:
                rows = dict(
                    conn.execute(
                        text(
                            "SELECT id::text, (metadata->>'request_id')::bigint FROM token_usage"
                            " WHERE user_id = ANY(:users) AND metadata ? 'fix'"
                        ),
                        {"users": list(self.model)},
                    ).all()
                )
                items = conn.execute(
                    text(
                        f"SELECT request_id, user_id, state, ledger_row_ids FROM {SCHEMA}.fix_items"
                        " WHERE request_id = ANY(:ids)"
                    ),
                    {"ids": list(self.open)},
                ).all()
                audited = conn.execute(
                    text(
                        f"SELECT request_id, details->>'user_id' FROM {SCHEMA}.audit_log"
                        " WHERE event = 'fix_applied' AND request_id = ANY(:ids)"
                    ),
                    {"ids": list(self.open)},
                ).all()
            applied = [i for i in items if i.state == ItemState.APPLIED.value]
            written = [(i.request_id, row) for i in applied for row in i.ledger_row_ids]
            assert sorted(written) == sorted((request, row) for row, request in rows.items())
            assert sorted((i.request_id, i.user_id) for i in applied) == sorted(tuple(a) for a in audited)
            assert all(not i.ledger_row_ids for i in items if i.state != ItemState.APPLIED.value)
            for request in self.open.values():
                assert set(request.applied) == {i.user_id for i in applied if i.request_id == request.id}

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
                        " AND t.action_type IN ('admin_grant', 'admin_deduct') AND NOT t.metadata ? 'fix'"
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


@pytest.fixture(scope="module")
def own_engine(server_url: str) -> Iterator[Engine]:
    """A database of its own: batch fixes scan every user, and each example empties it when done."""
    with scratch_database(server_url, "tokens_property") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_interleaved_operations_keep_balances_on_the_ledger_formula(
    settings: Settings, own_engine: Engine
) -> None:
    """After every step: balances equal the formula (less known drift), none is negative, admin rows trace
    to requests, fix rows to exactly one applied item, and a user a fix reconciled stays so until written."""
    run_state_machine_as_test(
        machine(own_engine, settings),
        settings=hypothesis_settings(
            max_examples=15,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
