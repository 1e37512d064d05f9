"""The `/tokens check` reply as a value: everything it shows, the fixes it offers included."""

from __future__ import annotations

from pydantic import Field

from core.domain.fixes import FixOption, Unfixable
from core.domain.models import (
    Balance,
    BreakdownRow,
    DataQualityNote,
    Finding,
    Frozen,
    LedgerSnapshot,
    Operation,
    Page,
    UserRef,
    Verdict,
)


class CheckReport(Frozen):
    """One user's `/tokens check`: balance, verdict, findings, breakdown and one page of operations."""

    user: UserRef
    balance: Balance
    verdict: Verdict
    findings: list[Finding]
    breakdown: list[BreakdownRow]
    operations: list[Operation]
    operations_total: int
    page: Page
    explicit_initial_grant: int | None = None
    data_quality: list[DataQualityNote] = Field(default_factory=list)
    fixes: list[FixOption] = Field(default_factory=list)
    """The fixes the findings allow, the recommended one first (core.domain.fixes)."""
    unfixable: list[Unfixable] = Field(default_factory=list)
    snapshot: LedgerSnapshot | None = None
    """The ledger position the check saw: a fix proposed from it must still match it."""
