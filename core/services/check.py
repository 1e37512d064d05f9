"""The `/tokens check` use case: one user's balance, verdict, findings, breakdown and operations."""

from __future__ import annotations

import math
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import Connection, RowMapping

from core.domain.balance import judge
from core.domain.check_report import CheckReport
from core.domain.findings import diagnose
from core.domain.fixes import fix_options
from core.domain.models import Balance, Finding, Page, Verdict
from core.domain.quality import ledger_notes, profile_notes
from core.domain.tiers import Tiers, known_amounts
from core.settings import Settings
from core.store.balances import read_balance
from core.store.columns import Columns
from core.store.ledger import ledger_snapshot, recent_operations, usage_breakdown
from core.store.product import ProductShape
from core.store.signals import read_ledger_signals
from core.store.tiers import load_tiers
from core.store.users import find_user


class Judgement(NamedTuple):
    """A user's balance, what was found and the verdict: the check's, and the chart's, one computation."""

    balance: Balance
    sums: RowMapping
    findings: list[Finding]
    verdict: Verdict


def judge_user(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    tiers: Tiers,
    user_id: str,
    initial_grant: int | None = None,
) -> Judgement:
    """The balance, findings and verdict of one user, so every reply about them shows the same verdict."""
    balance, sums = read_balance(conn, cols, tiers, user_id, initial_grant)
    signals = read_ledger_signals(conn, cols, settings, user_id)
    findings = diagnose(balance, signals, known_amounts(tiers, cols.shape.remaining_default))
    verdict = judge(balance, findings, settings.tokens_problem_threshold, partial=cols.shape.hidden_rows)
    return Judgement(balance, sums, findings, verdict)


def check_user(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    user: UUID | str,
    *,
    page: int = 1,
    initial_grant: int | None = None,
) -> CheckReport:
    """Everything the check reply shows, read in the caller's single snapshot."""
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    ref = find_user(conn, cols, user)
    balance, sums, findings, verdict = judge_user(conn, cols, settings, tiers, ref.user_id, initial_grant)
    shown = min(balance.ledger_rows, settings.tokens_recent_operations)
    size = settings.tokens_page_size
    pages = max(1, math.ceil(shown / size))
    number = min(max(page, 1), pages)
    offset = (number - 1) * size
    fixes, unfixable = fix_options(balance, findings)
    return CheckReport(
        user=ref,
        balance=balance,
        verdict=verdict,
        findings=findings,
        breakdown=usage_breakdown(conn, cols, ref.user_id),
        operations=recent_operations(conn, cols, ref.user_id, offset=offset, limit=min(size, shown - offset)),
        operations_total=balance.ledger_rows,
        page=Page(number=number, count=pages),
        explicit_initial_grant=initial_grant,
        data_quality=ledger_notes(dict(sums)) + profile_notes(balance, shape.hidden_tables),
        fixes=fixes,
        unfixable=unfixable,
        snapshot=ledger_snapshot(conn, cols, ref.user_id),
    )
