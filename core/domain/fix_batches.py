"""A fix request as approvers see it, and a batch's life after approval: items, progress, verification.

A batch is one request over many users; it is applied per user, each in its own transaction that
also marks the item, so it resumes after any interruption and never applies an item twice.
"""

from __future__ import annotations

from enum import StrEnum

from core.domain.fix_plans import FixPlan, LedgerEntry, ProfileValues
from core.domain.fixes import Cause, FixKind, WrongSide
from core.domain.models import Frozen, UserRef

# An applied item's verification when the user's check now says reconciled.
RECONCILED = "reconciled"

# How many of a batch's items the approval message names; the full list is a file in its thread.
LARGEST_SHOWN = 10


class ItemState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    STALE = "stale"
    FAILED = "failed"


class FixItem(Frozen):
    user: UserRef
    tokens: int


class FixSummary(Frozen):
    """What a fix request changes: for one user the whole plan, for a batch the totals and largest items."""

    cause: Cause
    kind: FixKind
    side: WrongSide
    users: int
    tokens: int
    remaining_up: int
    remaining_down: int
    ledger_rows: int
    largest: tuple[FixItem, ...]
    plan: FixPlan | None = None
    """The one user's plan (rows, before and after) when the request is for one user."""

    @property
    def is_batch(self) -> bool:
        return self.plan is None


def summarize(plans: list[FixPlan]) -> FixSummary:
    """The approvers' view of `plans` (all for one cause and fix kind)."""
    first = plans[0].option
    moves = [p.remaining_delta for p in plans]
    return FixSummary(
        cause=first.cause,
        kind=first.kind,
        side=first.side,
        users=len(plans),
        tokens=sum(p.option.tokens for p in plans),
        remaining_up=sum(m for m in moves if m > 0),
        remaining_down=-sum(m for m in moves if m < 0),
        ledger_rows=sum(len(p.entries) for p in plans),
        largest=tuple(
            FixItem(user=p.user, tokens=p.option.tokens)
            for p in sorted(plans, key=lambda p: (-p.option.tokens, p.user.user_id))[:LARGEST_SHOWN]
        ),
        plan=plans[0] if len(plans) == 1 else None,
    )


class ItemReport(Frozen):
    user: UserRef
    state: ItemState
    tokens: int
    before: ProfileValues | None = None
    after: ProfileValues | None = None
    entries: tuple[LedgerEntry, ...] = ()
    """The ledger rows the item writes (or wrote), as planned."""
    outcome: str | None = None
    verified: bool | None = None
    verification: str | None = None


class BatchProgress(Frozen):
    """Where a fix request's items stand; `verified`/`differing` count only after the verification."""

    request_id: int
    total: int
    pending: int
    applied: int
    stale: int
    failed: int
    reconciled: int = 0
    """Applied items whose user's check now says reconciled."""
    differing: int = 0
    """Applied items whose cause is gone but whose user still differs for another reason."""
    unverified: int = 0
    """Applied items whose cause the check still finds: the fix did not do what it promised."""
    problems: tuple[ItemReport, ...] = ()
    """Stale, failed and not reconciled items, the first few, with their reasons."""

    @property
    def verified(self) -> bool:
        return self.reconciled + self.differing + self.unverified == self.applied

    @property
    def done(self) -> bool:
        return self.pending == 0
