"""Fixes, the use cases before approval: the fleet grouped by cause, and proposing a fix for one user or
for every user of a cause (applying them: core.services.fix_apply).

Each function runs inside the transaction the caller (core.services.fix_service) opened for it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import Connection

from core.domain.approvals import (
    ApprovalRequest,
    Person,
    RequestKind,
    require_requester,
)
from core.domain.errors import (
    InvalidAdjustmentError,
    ProductDataError,
    StaleCorrectionError,
)
from core.domain.fix_batches import summarize
from core.domain.fix_plans import FixActions, FixPlan, plan_fix
from core.domain.fixes import Cause, FixKind, FixOption, fix_options, primary_cause
from core.domain.models import LedgerSnapshot, Page, UserRef
from core.domain.reports import CauseGroup, DiscrepancyReport, DiscrepancyRow
from core.services.check import judge_user
from core.settings import Settings
from core.store import discrepancies, fix_items
from core.store.columns import Columns
from core.store.fix_writes import rehearse_plan
from core.store.ledger import ledger_snapshot, ledger_snapshots
from core.store.ledger_writes import current_row
from core.store.product import ProductShape
from core.store.requests import insert_request
from core.store.signals import read_duplicate_rows
from core.store.tiers import load_tiers
from core.store.users import find_user

# The causes (and a batch's users) come from this many of the largest discrepancies: their findings need
# their rows' signals, so the time and memory of a list stay bounded whatever the fleet's size. A batch
# fixes them; the next list shows the next ones.
CAUSE_WINDOW = 5_000


def fix_actions(settings: Settings, cols: Columns) -> FixActions:
    return FixActions(
        grant=settings.tokens_grant_actions[0],
        deduct=settings.tokens_deduct_actions[0],
        model=settings.tokens_ledger_model,
        cost_divisor=cols.cost_divisor,
    )


def discrepancy_report(
    conn: Connection, shape: ProductShape, settings: Settings, *, minimum: int, cause: Cause | None, page: int
) -> DiscrepancyReport:
    """`/tokens discrepancies [min] [cause]`: every discrepant user grouped by cause, one page of them.

    The groups take the signals kept at the last fold where a user's rows have changed since; the page's
    rows are diagnosed from their rows now."""
    found = discrepancies.discrepant_users(
        conn, shape, settings, minimum=minimum, window=CAUSE_WINDOW, current=False
    )
    rows = found.rows
    groups: dict[Cause, list[DiscrepancyRow]] = defaultdict(list)
    for row in rows:
        groups[primary_cause(row.findings)].append(row)
    shown = groups.get(cause, []) if cause is not None else rows
    size = settings.tokens_page_size
    pages = max(1, -(-len(shown) // size))
    number = min(max(page, 1), pages)
    offset = (number - 1) * size
    return DiscrepancyReport(
        minimum=minimum,
        cause=cause,
        causes=tuple(
            sorted(
                (_group(c, members) for c, members in groups.items()), key=lambda g: (-g.users, g.cause.value)
            )
        ),
        discrepant=found.total,
        classified=len(rows),
        total=len(shown),
        deferred=found.deferred,
        grace_seconds=settings.tokens_scan_grace_seconds,
        rows=_current(conn, shape, settings, shown[offset : offset + size], found.older),
        older_causes=len(found.older),
        offset=offset,
        page=Page(number=number, count=pages),
        ledger=found.ledger,
    )


def _current(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    rows: list[DiscrepancyRow],
    older: frozenset[str],
) -> list[DiscrepancyRow]:
    """The page's rows, those diagnosed from older signals diagnosed again from their rows now."""
    again = {
        row.user.user_id: row
        for row in discrepancies.rediagnose(
            conn, shape, settings, [r for r in rows if r.user.user_id in older]
        )
    }
    return [again.get(row.user.user_id, row) for row in rows]


def _group(cause: Cause, rows: list[DiscrepancyRow]) -> CauseGroup:
    options = [_option_for(row, cause) for row in rows]
    fixable = [o for o in options if o is not None]
    kinds = Counter((o.kind, o.side) for o in fixable).most_common(1)
    return CauseGroup(
        cause=cause,
        users=len(rows),
        tokens=sum(row.worst for row in rows),
        fixable=len(fixable),
        fix=kinds[0][0][0] if kinds else None,
        side=kinds[0][0][1] if kinds else None,
    )


def _option_for(row: DiscrepancyRow, cause: Cause) -> FixOption | None:
    options, _ = fix_options(row.balance, row.findings)
    return next((o for o in options if o.cause is cause), None)


def propose_fix(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    user_id: str,
    cause: Cause,
    seen: LedgerSnapshot,
    now: datetime,
) -> ApprovalRequest:
    """The check's "Propose fix" button: the fix for `cause`, rebuilt from the ledger the proposer saw."""
    require_requester(settings, actor)
    cols = Columns.of(shape, settings)
    ref = find_user(conn, cols, user_id)
    balance, _, findings, _ = judge_user(conn, cols, settings, load_tiers(conn, shape, settings), ref.user_id)
    snapshot = ledger_snapshot(conn, cols, ref.user_id)
    if snapshot != seen:
        raise StaleCorrectionError(
            f"The ledger of {ref.label} changed since that check ({snapshot.rows - seen.rows:+,} rows), so its"
            " fix may no longer be right. Run `/tokens check` again and propose from the new one."
        )
    options, refused = fix_options(balance, findings)
    option = next((o for o in options if o.cause is cause), None)
    if option is None:
        why = next((r.why for r in refused if r.cause is cause), "the check no longer finds this cause.")
        raise InvalidAdjustmentError(f"No {cause.value} fix for {ref.label}: {why}")
    duplicates = (
        read_duplicate_rows(conn, cols, settings, [ref.user_id])[ref.user_id]
        if option.kind is FixKind.LEDGER_REVERSAL
        else []
    )
    plan = plan_fix(ref, option, balance, snapshot, duplicates, fix_actions(settings, cols))
    key, _ = current_row(conn, cols, ref.user_id, lock=False)
    rehearse_plan(conn, cols, settings, plan, key, now)
    return _store_request(conn, settings, actor, [plan], now)


def propose_batch(
    conn: Connection,
    shape: ProductShape,
    settings: Settings,
    actor: Person,
    cause: Cause,
    minimum: int,
    now: datetime,
) -> ApprovalRequest:
    """ "Propose fix for all N users": one request over every discrepant user whose cause is `cause`."""
    require_requester(settings, actor)
    cols = Columns.of(shape, settings)
    rows = discrepancies.discrepant_users(
        conn, shape, settings, minimum=minimum, window=CAUSE_WINDOW, current=True
    ).rows
    chosen = [
        (row, option)
        for row in rows
        if primary_cause(row.findings) is cause and (option := _option_for(row, cause)) is not None
    ]
    if not chosen:
        raise InvalidAdjustmentError(
            f"No discrepant user over {minimum:,} tokens has a {cause.value} fix right now; nothing was proposed."
        )
    users = [row.user.user_id for row, _ in chosen]
    snapshots = ledger_snapshots(conn, cols, users)
    reversing = [row.user.user_id for row, option in chosen if option.kind is FixKind.LEDGER_REVERSAL]
    duplicates = read_duplicate_rows(conn, cols, settings, reversing) if reversing else {}
    actions = fix_actions(settings, cols)
    plans = [
        plan_fix(
            row.user,
            option,
            row.balance,
            snapshots[row.user.user_id],
            duplicates.get(row.user.user_id, []),
            actions,
        )
        for row, option in chosen
    ]
    return _store_request(conn, settings, actor, _writable(conn, cols, settings, plans, now), now)


def _writable(
    conn: Connection, cols: Columns, settings: Settings, plans: list[FixPlan], now: datetime
) -> list[FixPlan]:
    """The plans whose rows the product takes: one plan of each shape (fix kind, action types and signs of
    its rows, whether it moves the profile) is rehearsed, and the plans of a refused shape are left out.
    If every shape is refused, the first refusal is the answer."""
    first_of: dict[object, FixPlan] = {}
    for plan in plans:
        first_of.setdefault(_shape(plan), plan)
    refused: dict[object, ProductDataError] = {}
    for shape, plan in first_of.items():
        key, _ = current_row(conn, cols, plan.user.user_id, lock=False)
        try:
            rehearse_plan(conn, cols, settings, plan, key, now)
        except ProductDataError as refusal:
            refused[shape] = refusal
    kept = [plan for plan in plans if _shape(plan) not in refused]
    if not kept:
        raise next(iter(refused.values()))
    return kept


def _shape(plan: FixPlan) -> object:
    return (
        plan.option.kind,
        tuple((e.action, e.tokens < 0) for e in plan.entries),
        plan.after == plan.before,
    )


def _store_request(
    conn: Connection, settings: Settings, actor: Person, plans: list[FixPlan], now: datetime
) -> ApprovalRequest:
    summary = summarize(plans)
    user = (
        plans[0].user
        if len(plans) == 1
        else UserRef(user_id="*", email=f"{len(plans):,} users ({summary.cause.value})")
    )
    reason = (
        plans[0].option.summary if len(plans) == 1 else f"Fix {summary.cause.value} for {len(plans):,} users"
    )
    remaining = plans[0].before.remaining if len(plans) == 1 else 0
    quorum = settings.batch_quorum if len(plans) > 1 else settings.quorum_for(_size(plans[0]))
    request = insert_request(
        conn, settings, actor, user, RequestKind.FIX, reason, remaining, now, fix=summary, quorum=quorum
    )
    fix_items.insert_items(conn, settings, request.id, plans)
    return request


def _size(plan: FixPlan) -> int:
    """A fix's size for TOKENS_QUORUM: the most it moves any balance or writes in one ledger row."""
    return max(
        abs(plan.after.remaining - plan.before.remaining),
        abs(plan.after.used - plan.before.used),
        *(abs(entry.tokens) for entry in plan.entries),
    )
