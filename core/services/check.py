"""The `/tokens check` use case: one user's balance, verdict, findings, breakdown and operations."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Connection

from core.domain.balance import judge
from core.domain.check_report import CheckReport
from core.domain.findings import diagnose
from core.domain.fixes import fix_options
from core.domain.models import Balance, Finding, Page, Verdict
from core.domain.quality import ledger_notes, profile_notes
from core.domain.tiers import Tiers, known_amounts
from core.settings import Settings
from core.store.balances import read_balance
from core.store.check_reads import read_check
from core.store.columns import Columns
from core.store.ledger import recent_operations
from core.store.product import ProductShape
from core.store.signals import read_ledger_signals
from core.store.tiers import load_tiers
from core.store.users import user_id_of


class Judgement(NamedTuple):
    """A user's balance, what was found and the verdict: the check's, and the chart's, one computation."""

    balance: Balance
    sums: Mapping[Any, Any]
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
    return judgement(cols, settings, tiers, balance, sums, read_ledger_signals(conn, cols, settings, user_id))


def judgement(
    cols: Columns,
    settings: Settings,
    tiers: Tiers,
    balance: Balance,
    sums: Mapping[Any, Any],
    signals: dict[str, Any],
) -> Judgement:
    """The findings and verdict of what was read, however it was read."""
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
    """Everything the check reply shows, read in the caller's single snapshot.

    The page asked for is read with the rest, in one round trip, and for the first page the COMMIT with
    them; only a page past the end (a stale button) costs a second one, for the last page.
    """
    cols = Columns.of(shape, settings)
    tiers = load_tiers(conn, shape, settings)
    user_id = user_id_of(conn, cols, user)
    size, recent = settings.tokens_page_size, settings.tokens_recent_operations
    wanted = max(page, 1)
    offset = (wanted - 1) * size
    read = read_check(
        conn,
        cols,
        settings,
        tiers,
        user_id,
        initial_grant=initial_grant,
        offset=offset,
        limit=max(0, min(size, recent - offset)),
        ending=wanted == 1,
    )
    balance, sums, findings, verdict = judgement(cols, settings, tiers, read.balance, read.sums, read.signals)
    shown = min(balance.ledger_rows, recent)
    pages = max(1, math.ceil(shown / size))
    number = min(wanted, pages)
    operations = read.operations
    if number != wanted:
        offset = (number - 1) * size
        operations = recent_operations(conn, cols, user_id, offset=offset, limit=min(size, shown - offset))
    fixes, unfixable = fix_options(balance, findings)
    return CheckReport(
        user=read.user,
        balance=balance,
        verdict=verdict,
        findings=findings,
        breakdown=read.breakdown,
        operations=operations,
        operations_total=balance.ledger_rows,
        page=Page(number=number, count=pages),
        explicit_initial_grant=initial_grant,
        data_quality=ledger_notes(dict(sums)) + profile_notes(balance, shape.hidden_tables),
        fixes=fixes,
        unfixable=unfixable,
        snapshot=read.snapshot,
    )
