"""Two-person approval as rules and values: who may ask and decide, the limits, a request's life.

No SQL here: core.store.requests keeps requests, core.services.approvals decides them in one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.domain.alerts import Alert
from core.domain.errors import (
    InvalidAdjustmentError,
    NotAllowedError,
    NotConfiguredError,
    RequestRefusedError,
)
from core.domain.fix_batches import FixSummary
from core.domain.models import Balance, CostUnit, Frozen, InitialGrant, LedgerSnapshot, UserRef
from core.settings import Settings


class RequestKind(StrEnum):
    ADJUSTMENT = "adjustment"
    CORRECTION = "correction"
    FIX = "fix"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPLYING = "applying"
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STALE = "stale"


class Person(Frozen):
    """A Slack user as the audit trail names them; `email` is only known when Slack told us."""

    slack_id: str
    name: str
    email: str | None = None

    def audit(self) -> dict[str, str]:
        return {"slack_id": self.slack_id, "name": self.name}


class Vote(Frozen):
    """One approver's approval of a request, with when it was given."""

    voter: Person
    at: datetime


# Expiries found by a sweep are nobody's decision; the audit trail names the bot itself.
SYSTEM = Person(slack_id="tokens-bot", name="tokens-bot")


class Correction(Frozen):
    """The guide's Step 5 for one user: the profile's values before, and the ledger-derived values after."""

    initial_grant: InitialGrant
    explicit_initial_grant: int | None
    snapshot: LedgerSnapshot
    before_remaining: int
    before_used: int
    before_cost: Decimal
    remaining: int
    used: int
    cost: Decimal
    cost_unit: CostUnit = "dollars"


class ApprovalRequest(Frozen):
    """One grant, deduction or correction, from asking to its decision."""

    id: int
    kind: RequestKind
    status: RequestStatus
    user: UserRef
    delta: int | None
    reason: str
    remaining_at_request: int
    correction: Correction | None
    requester: Person
    requested_at: datetime
    expires_at: datetime
    decider: Person | None
    decided_at: datetime | None
    decision_reason: str | None
    balance_before: int | None
    balance_after: int | None
    ledger_row_id: str | None
    channel: str | None
    message_ts: str | None
    reminded_at: datetime | None = None
    fix: FixSummary | None = None
    quorum: int = 1
    """Distinct approvers needed (TOKENS_QUORUM when it was asked); `votes` holds those given so far."""
    votes: tuple[Vote, ...] = ()

    @property
    def votes_missing(self) -> int:
        return max(self.quorum - len(self.votes), 0)

    @property
    def resulting_balance(self) -> int:
        """The balance the request asks for, as computed when it was asked."""
        if self.correction is not None:
            return self.correction.remaining
        assert self.delta is not None
        return self.remaining_at_request + self.delta


class Decision(Frozen):
    """What one click changed: the state it put the request in, and the request as it now stands."""

    outcome: RequestStatus
    request: ApprovalRequest
    actor: Person


class TickResult(Frozen):
    """What one `tokens-bot tick` did in the database, for the Slack side to publish after the commit.

    `ran` is False when another tick held the lock: this one then did nothing, and nothing is due from it.
    `reminders` are already marked reminded at `at`, so every other tick leaves them alone for the interval.
    `alerts` are recorded as fired (core.store.alerts), so no other tick tells them again.
    """

    ran: bool
    at: datetime
    expired: tuple[ApprovalRequest, ...] = ()
    reminders: tuple[ApprovalRequest, ...] = ()
    alerts: tuple[Alert, ...] = ()


class ReconcileReport(Frozen):
    """The guide's Step 4 for one user, and the ledger position a proposed correction must still match."""

    user: UserRef
    balance: Balance
    snapshot: LedgerSnapshot
    explicit_initial_grant: int | None

    @property
    def needs_correction(self) -> bool:
        b = self.balance
        return bool(b.remaining_discrepancy or b.used_discrepancy or b.cost_discrepancy)


def when(moment: datetime) -> str:
    """Times in replies and refusals: UTC to the minute, the same for every reader."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def check_limits(settings: Settings, delta: int, remaining: int) -> None:
    """The limits DESIGN.md names, checked when asked and again, on current values, when applied."""
    if delta == 0:
        raise InvalidAdjustmentError(
            "A delta of 0 changes nothing: give a positive amount to grant or a negative one to deduct."
        )
    if abs(delta) > settings.tokens_max_adjustment:
        raise InvalidAdjustmentError(
            f"{delta:+,} tokens is over the limit of {settings.tokens_max_adjustment:,} per adjustment"
            " (TOKENS_MAX_ADJUSTMENT)."
        )
    if delta < 0 and remaining + delta < 0:
        raise InvalidAdjustmentError(
            f"Deducting {-delta:,} tokens would take the balance from {remaining:,} to {remaining + delta:,};"
            f" a balance may not go below zero, so at most {max(remaining, 0):,} can be deducted now."
        )


def check_correction_limits(settings: Settings, b: Balance) -> None:
    """A correction moves remaining and used by at most TOKENS_MAX_ADJUSTMENT each, like an adjustment."""
    for what, before, after in (
        ("remaining", b.current_remaining, b.expected_remaining),
        ("used", b.current_used, b.calculated_used),
    ):
        if abs(after - before) > settings.tokens_max_adjustment:
            raise InvalidAdjustmentError(
                f"This correction would move {what} by {after - before:+,} tokens, over the limit of"
                f" {settings.tokens_max_adjustment:,} per change (TOKENS_MAX_ADJUSTMENT). Check the initial"
                " grant; a change this large needs the limit raised by whoever runs tokens-bot."
            )


def require_requester(settings: Settings, actor: Person) -> None:
    if actor.slack_id not in settings.tokens_admins:
        raise NotAllowedError(
            "Only tokens-bot admins can ask for grants, deductions and corrections. Ask an admin to add"
            " your Slack ID to TOKENS_ADMINS."
        )
    if not settings.tokens_approvals_channel:
        raise NotConfiguredError(
            "Approvals are not set up: TOKENS_APPROVALS_CHANNEL must name the channel where requests"
            " are posted. Nothing was requested."
        )


def require_pending(request: ApprovalRequest) -> None:
    if request.status is RequestStatus.PENDING:
        return
    by = request.decider.name if request.decider else "tokens-bot"
    at = when(request.decided_at) if request.decided_at else "an unknown time"
    messages = {
        RequestStatus.APPLIED: f"Request #{request.id} was already approved by {by} at {at}.",
        RequestStatus.APPLYING: f"Request #{request.id} was already approved by {by} at {at}; its fixes are"
        " being applied.",
        RequestStatus.REJECTED: f"Request #{request.id} was already rejected by {by} at {at}"
        f" ({request.decision_reason}).",
        RequestStatus.CANCELLED: f"Request #{request.id} was cancelled by {by} at {at}.",
        RequestStatus.EXPIRED: f"Request #{request.id} expired at {when(request.expires_at)} and can no"
        " longer be decided. Ask again if it is still needed.",
        RequestStatus.STALE: f"Request #{request.id} went stale at {at}: the ledger changed after it was"
        " proposed. Run `/tokens reconcile` again for a fresh correction.",
    }
    raise RequestRefusedError(messages[request.status])


def approval_trail(request: ApprovalRequest, actor: Person, now: datetime) -> dict[str, Any]:
    """Who asked, who approved and when, on every applied request; `source` and `request_id` are also
    what marks a ledger row as written by tokens-bot (core.store.columns.Columns.written_by_bot)."""
    voters = {v.voter.slack_id: v.voter for v in request.votes} | {actor.slack_id: actor}
    return {
        "source": "slack",
        "request_id": request.id,
        "requested_by": request.requester.audit(),
        "approved_by": actor.audit(),
        "approvals": [voter.audit() for voter in voters.values()],
        "requested_at": request.requested_at.isoformat(),
        "approved_at": now.isoformat(),
    }
