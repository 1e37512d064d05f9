"""Typed results of the fleet use cases: low balances, discrepancies, top usage, the digest, the doctor."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field

from core.domain.fixes import Cause, FixKind, WrongSide
from core.domain.models import Balance, CostUnit, Finding, Frozen, Page, UserRef
from core.domain.rollups import LedgerRead


class LowBalanceRow(Frozen):
    user: UserRef
    remaining: int
    remaining_unset: bool = False
    """The profile's remaining is NULL, read as 0."""
    used: int
    recent_used: int
    """Successful usage over the burn window; the forecast divides it by the window's days."""
    burn_window_days: int

    @property
    def burn_per_day(self) -> int:
        return self.recent_used // self.burn_window_days

    @property
    def days_to_zero(self) -> Decimal | None:
        """0 when the balance is already gone; None when there was no recent usage to forecast from."""
        if self.remaining <= 0:
            return Decimal(0)
        if self.recent_used <= 0:
            return None
        return (Decimal(self.remaining) * self.burn_window_days / self.recent_used).quantize(Decimal("0.1"))


class LowBalanceReport(Frozen):
    threshold: int
    total: int
    negative: int
    burn_window_days: int
    rows: list[LowBalanceRow]
    offset: int
    page: Page


class DiscrepancyRow(Frozen):
    """One user's balance as the scan computed it, and the check's findings that explain it."""

    user: UserRef
    balance: Balance
    findings: list[Finding]

    @property
    def worst(self) -> int:
        return max(abs(self.balance.used_discrepancy), abs(self.balance.remaining_discrepancy))


class CauseGroup(Frozen):
    """The discrepant users one cause explains, and how many of them its fix can close."""

    cause: Cause
    users: int
    tokens: int
    fixable: int
    fix: FixKind | None = None
    side: WrongSide | None = None


class DiscrepancyReport(Frozen):
    minimum: int
    cause: Cause | None = None
    """The cause the list is narrowed to (`/tokens discrepancies [min] [cause]`); None: every cause."""
    causes: tuple[CauseGroup, ...] = ()
    """The causes of the `classified` largest discrepancies (not only the page), largest group first."""
    discrepant: int = 0
    """Every discrepant user over the minimum; the causes are of the largest `classified` of them."""
    classified: int = 0
    older_causes: int = 0
    """Of the `classified`, users grouped by the signals kept at the last fold: they have rows since. Their
    balances, and every row of the page, are current."""
    total: int
    deferred: int
    """Users left out because the tokens of their rows inside the grace window, which may still be
    mid-write, could explain their whole discrepancy."""
    grace_seconds: int
    rows: list[DiscrepancyRow]
    offset: int
    page: Page
    ledger: LedgerRead = LedgerRead()


class TopRow(Frozen):
    user: UserRef
    used: int
    cost: Decimal
    remaining: int


class TopReport(Frozen):
    cost_unit: CostUnit = "dollars"
    requested: int
    users: int
    """Every profile ranked; the list is the first `requested` of them."""
    rows: list[TopRow]
    offset: int
    page: Page


class FleetTotals(Frozen):
    users: int
    remaining: int
    used: int
    cost: Decimal
    negative: int
    unset: int = 0
    """Profiles whose remaining balance is NULL (read as 0)."""
    cost_unit: CostUnit = "dollars"


class DigestReport(Frozen):
    """A daily digest: what is low, what drifted since the previous digest in this channel, and totals."""

    channel: str
    generated_at: datetime
    previous_at: datetime | None
    totals: FleetTotals
    low: LowBalanceReport
    minimum: int
    discrepant: int
    deferred: int
    new: int
    unresolved: int
    resolved: int
    new_rows: list[DiscrepancyRow]
    unresolved_rows: list[DiscrepancyRow]
    ledger: LedgerRead = LedgerRead()


class IndexCheck(Frozen):
    table: str
    columns: list[str]
    why: str
    present: str | None
    """The name of an index that serves it, or None when it is missing."""
    create_sql: str


class SchemaNote(Frozen):
    """One way the product's schema differs from the guide's, and what tokens-bot does about it."""

    subject: str
    found: str
    meaning: str


class ActionTypeCount(Frozen):
    """One action type in the ledger: its rows and successful tokens, how the bot reads it, and why that
    reading looks wrong (`hint`), if it does."""

    action: str | None
    rows: int
    tokens: int
    kind: str
    hint: str | None = None


class QualityCount(Frozen):
    what: str
    rows: int


class DoctorReport(Frozen):
    database: str
    server_version: str
    url_port: int | None
    server_port: int | None
    pooler: str | None
    """Why the connection looks like it goes through a transaction pooler, or None."""
    prepared_statements_off: bool
    in_recovery: bool
    row_estimates: dict[str, int | None]
    indexes: list[IndexCheck]
    bot_schema_revision: str | None
    schema_notes: list[SchemaNote] = Field(default_factory=list)
    odd_rows: list[QualityCount] = Field(default_factory=list)
    action_types: list[ActionTypeCount] = Field(default_factory=list)
    product_notes: list[SchemaNote] = Field(default_factory=list)
    suggested: list[str] = Field(default_factory=list)
    """Setting lines the evidence points to, where they differ from the configuration in force."""
