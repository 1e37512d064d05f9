"""Typed results of the reconciliation use cases: everything a reply shows, computed in the core."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Results are values: immutable once the core returns them, so no renderer can alter a decision."""

    model_config = ConfigDict(frozen=True)


class Verdict(StrEnum):
    RECONCILED = "reconciled"
    MINOR = "minor"
    PROBLEM = "problem"


CostUnit = Literal["dollars", "cents"]


class GrantSource(StrEnum):
    """Which assumption gave the initial grant, so a reader can judge the expected balance."""

    RESET = "reset"
    EXPLICIT = "explicit"
    TIER = "tier"
    FIRST_ADMIN_GRANT = "first_admin_grant"
    NONE = "none"


class FindingKind(StrEnum):
    FAILED_CHARGED = "failed_charged"
    DUPLICATES = "duplicates"
    USAGE_NOT_CHARGED = "usage_not_charged"
    DUPLICATE_GRANT = "duplicate_grant"
    UNLOGGED_GRANT = "unlogged_grant"
    USAGE_BEFORE_TRACKING = "usage_before_tracking"
    COST_DRIFT = "cost_drift"
    NEGATIVE_BALANCE = "negative_balance"


class UserRef(Frozen):
    """A product user: the id as text, whatever type the product stores it as (uuid, bigint, text)."""

    user_id: str
    email: str | None = None
    profile: str | None = None
    """Which of the user's profile rows the numbers are from, where they have several."""

    @property
    def label(self) -> str:
        return self.email or str(self.user_id)


class LedgerSnapshot(Frozen):
    """How far a user's ledger had got when a correction was computed: any new row makes it stale."""

    rows: int
    last_at: datetime | None


class InitialGrant(Frozen):
    tokens: int
    source: GrantSource
    description: str
    logged: bool = False
    """True when one admin_grant row in the ledger is this grant (and so not an extra grant)."""


class Balance(Frozen):
    """The profile's cached values beside what the ledger says they should be."""

    current_used: int
    calculated_used: int
    current_cost: Decimal
    calculated_cost: Decimal
    current_remaining: int
    expected_remaining: int
    initial_grant: InitialGrant
    admin_grants: int
    admin_deductions: int
    ledger_rows: int
    failed_rows: int
    used_since_reset: int | None = None
    """Successful usage after the latest reset row, which the expected balance subtracts; None: no reset."""
    cost_unit: CostUnit = "dollars"
    """The unit of both costs: the profile's (TOKENS_COST_UNIT), and the ledger's converted to it."""
    unset: tuple[str, ...] = ()
    """Profile balance columns that are NULL (or absent): each read as 0, as the product's own code does."""

    @property
    def counted_used(self) -> int:
        """The usage the expected balance subtracts: since the latest reset where there is one, else all."""
        return self.calculated_used if self.used_since_reset is None else self.used_since_reset

    @property
    def used_discrepancy(self) -> int:
        return self.current_used - self.calculated_used

    @property
    def cost_discrepancy(self) -> Decimal:
        return self.current_cost - self.calculated_cost

    @property
    def remaining_discrepancy(self) -> int:
        return self.current_remaining - self.expected_remaining


class Finding(Frozen):
    kind: FindingKind
    tokens: int
    rows: int = 0
    summary: str


class DataQualityKind(StrEnum):
    """Rows the bot had to interpret; each has one meaning (README "Your product's schema")."""

    NULL_TOKENS = "null_tokens"
    NULL_COST = "null_cost"
    NULL_SUCCESS = "null_success"
    NULL_TIME = "null_time"
    FUTURE_TIME = "future_time"
    NULL_ACTION = "null_action"
    NEAR_MISS_ACTION = "near_miss_action"
    NEGATIVE_TOKENS = "negative_tokens"
    ODD_METADATA = "odd_metadata"
    PROFILE_UNSET = "profile_unset"
    HIDDEN_ROWS = "hidden_rows"


class DataQualityNote(Frozen):
    kind: DataQualityKind
    rows: int
    tokens: int = 0
    summary: str


class BreakdownRow(Frozen):
    action_type: str | None
    model_used: str | None
    operations: int
    failed_operations: int
    tokens: int
    cost: Decimal
    first_use: datetime | None
    last_use: datetime | None


class Operation(Frozen):
    """One ledger row as the product stored it: any column but the id may be NULL (shown as such)."""

    id: str
    created_at: datetime | None
    action_type: str | None
    model_used: str | None
    tokens_used: int | None
    cost_estimate: Decimal | None
    success: bool | None
    error_message: str | None


class Page(Frozen):
    number: int
    count: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count
