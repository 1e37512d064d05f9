"""Driving a fix the way the Slack layer does (propose from the check, a second person approves, the
items are applied and verified), and dumps of ledger rows to show a fix only ever inserted rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

from core.domain.approvals import Person, RequestStatus
from core.domain.fix_batches import BatchProgress
from core.domain.fixes import Cause, FixOption
from core.services.service import TokensService

ASKER = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
APPROVER = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")


def ledger_dump(conn: Connection, user_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Every ledger row of these users, all columns, keyed by the row's id as text."""
    rows = conn.execute(
        text("SELECT t.id::text AS row_key, t.* FROM token_usage t WHERE t.user_id::text = ANY(:ids)"),
        {"ids": user_ids},
    ).all()
    return {row.row_key: tuple(row) for row in rows}


def dump_of(engine: Engine, user_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        return ledger_dump(conn, user_ids)


def inserted_only(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> set[str]:
    """The ids of the rows added since `before`, after asserting every earlier row is still there, unchanged."""
    assert {key: after.get(key) for key in before} == before
    return set(after) - set(before)


def recommended(service: TokensService, user_id: str) -> FixOption | None:
    report = service.check("UADMIN1", user_id)
    return next((o for o in report.fixes if o.recommended), None)


def propose_and_apply(
    service: TokensService, user_id: str, cause: Cause, *, limit: int = 10
) -> tuple[int, BatchProgress]:
    """The check's "Propose fix" button for `cause`, approved by a second person, applied and verified."""
    check = service.check("UADMIN1", user_id)
    assert check.snapshot is not None
    request = service.propose_fix(ASKER, user_id, cause, check.snapshot)
    decision = service.approve(APPROVER, request.id)
    assert decision.outcome is RequestStatus.APPLYING
    service.apply_fix(request.id, limit=limit)
    closed, progress = service.finish_fix(request.id)
    assert closed is not None and closed.outcome is RequestStatus.APPLIED
    return request.id, progress


def item_rows(engine: Engine, schema: str, request_id: int) -> list[Any]:
    """A fix request's items as stored: user, state, outcome, verification and the ledger rows written."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT user_id, state, outcome, verified, verification, ledger_row_ids, before_image"
                    f" FROM {schema}.fix_items WHERE request_id = :r ORDER BY position"
                ),
                {"r": request_id},
            ).all()
        )
