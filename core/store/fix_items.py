"""A fix request's items in the bot's schema: one per user, claimed one at a time, marked as applied in
the transaction that applies it, so that any number of workers, restarts and replicas apply each once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from core.domain.approvals import RequestStatus
from core.domain.fix_batches import RECONCILED, BatchProgress, ItemReport, ItemState
from core.domain.fix_plans import FixPlan
from core.settings import Settings
from core.store.tables import approval_requests, fix_items, in_bot_schema

# How many stale, failed or still-differing items a progress report names.
PROBLEMS_SHOWN = 10


def insert_items(conn: Connection, settings: Settings, request_id: int, plans: list[FixPlan]) -> None:
    conn.execute(
        insert(fix_items),
        [
            {
                "request_id": request_id,
                "position": position,
                "user_id": plan.user.user_id,
                "state": ItemState.PENDING.value,
                "plan": plan.model_dump(mode="json"),
            }
            for position, plan in enumerate(plans)
        ],
        execution_options=in_bot_schema(settings),
    )


def claim_next_item(conn: Connection, settings: Settings, request_id: int) -> tuple[int, FixPlan] | None:
    """The next pending item, locked until commit; items other workers hold are skipped, not waited for."""
    row = conn.execute(
        select(fix_items.c.position, fix_items.c.plan)
        .where(fix_items.c.request_id == request_id, fix_items.c.state == ItemState.PENDING.value)
        .order_by(fix_items.c.position)
        .limit(1)
        .with_for_update(skip_locked=True),
        execution_options=in_bot_schema(settings),
    ).one_or_none()
    if row is None:
        return None
    return int(row.position), FixPlan.model_validate(row.plan)


def mark_item(
    conn: Connection,
    settings: Settings,
    request_id: int,
    position: int,
    state: ItemState,
    now: datetime,
    *,
    outcome: str | None = None,
    before_image: Any = None,
    ledger_row_ids: list[str] | None = None,
) -> None:
    conn.execute(
        update(fix_items)
        .where(fix_items.c.request_id == request_id, fix_items.c.position == position)
        .values(
            state=state.value,
            outcome=outcome,
            before_image=before_image,
            ledger_row_ids=ledger_row_ids,
            applied_at=now,
        ),
        execution_options=in_bot_schema(settings),
    )


def record_verification(
    conn: Connection, settings: Settings, request_id: int, results: dict[str, tuple[bool, str]]
) -> None:
    """Each applied item's verification: whether the user is now reconciled, and if not, why."""
    if not results:
        return
    conn.execute(
        update(fix_items)
        .where(fix_items.c.request_id == request_id, fix_items.c.user_id == bindparam("uid"))
        .values(verified=bindparam("ok"), verification=bindparam("why")),
        [{"uid": user_id, "ok": ok, "why": why} for user_id, (ok, why) in results.items()],
        execution_options=in_bot_schema(settings),
    )


def user_with_email(conn: Connection, settings: Settings, request_id: int, email: str) -> str | None:
    """The item's user whose email is `email` (any case), if the request has one."""
    found = conn.execute(
        select(fix_items.c.plan["user"]["email"].astext)
        .where(
            fix_items.c.request_id == request_id,
            func.lower(fix_items.c.plan["user"]["email"].astext) == email.lower(),
        )
        .limit(1),
        execution_options=in_bot_schema(settings),
    ).scalar_one_or_none()
    return None if found is None else str(found)


def applied_user_ids(conn: Connection, settings: Settings, request_id: int) -> list[str]:
    return list(
        conn.execute(
            select(fix_items.c.user_id)
            .where(fix_items.c.request_id == request_id, fix_items.c.state == ItemState.APPLIED.value)
            .order_by(fix_items.c.position),
            execution_options=in_bot_schema(settings),
        ).scalars()
    )


def progress(conn: Connection, settings: Settings, request_id: int) -> BatchProgress:
    """Counts by state and the first problems; read in the caller's snapshot."""
    i = fix_items.c
    counts = conn.execute(
        select(
            func.count().label("total"),
            *(func.count().filter(i.state == state.value).label(state.value) for state in ItemState),
            func.count().filter(i.verification == RECONCILED).label("reconciled"),
            func.count().filter(i.verified.is_(True) & (i.verification != RECONCILED)).label("differing"),
            func.count().filter(i.verified.is_(False)).label("unverified"),
        ).where(i.request_id == request_id),
        execution_options=in_bot_schema(settings),
    ).one()
    problem = i.state.in_([ItemState.STALE.value, ItemState.FAILED.value]) | (i.verification != RECONCILED)
    rows = conn.execute(
        select(i.user_id, i.state, i.plan, i.outcome, i.verified, i.verification)
        .where(i.request_id == request_id, problem)
        .order_by(i.position)
        .limit(PROBLEMS_SHOWN),
        execution_options=in_bot_schema(settings),
    ).all()
    return BatchProgress(
        request_id=request_id,
        total=counts.total,
        pending=getattr(counts, ItemState.PENDING.value),
        applied=getattr(counts, ItemState.APPLIED.value),
        stale=getattr(counts, ItemState.STALE.value),
        failed=getattr(counts, ItemState.FAILED.value),
        reconciled=counts.reconciled,
        differing=counts.differing,
        unverified=counts.unverified,
        problems=tuple(_report(row) for row in rows),
    )


def all_items(conn: Connection, settings: Settings, request_id: int) -> list[ItemReport]:
    """Every item of a request in order: the complete list approvers may download."""
    i = fix_items.c
    rows = conn.execute(
        select(i.user_id, i.state, i.plan, i.outcome, i.verified, i.verification)
        .where(i.request_id == request_id)
        .order_by(i.position),
        execution_options=in_bot_schema(settings),
    ).all()
    return [_report(row) for row in rows]


def _report(row: Any) -> ItemReport:
    plan = FixPlan.model_validate(row.plan)
    return ItemReport(
        user=plan.user,
        state=ItemState(row.state),
        tokens=plan.option.tokens,
        before=plan.before,
        after=plan.after,
        entries=plan.entries,
        outcome=row.outcome,
        verified=row.verified,
        verification=row.verification,
    )


def applying_requests(conn: Connection, settings: Settings, idle_since: datetime) -> list[int]:
    """Approved fix requests with pending items and no progress since `idle_since`: what a crash, deploy
    or lost connection left behind (a worker still at it keeps applying items, so it is not picked)."""
    r, i = approval_requests.c, fix_items.c
    last_progress = select(func.max(i.applied_at)).where(i.request_id == r.id).scalar_subquery()
    return list(
        conn.execute(
            select(r.id)
            .where(
                r.status == RequestStatus.APPLYING.value,
                func.coalesce(last_progress, r.decided_at) < idle_since,
            )
            .order_by(r.id),
            execution_options=in_bot_schema(settings),
        ).scalars()
    )
