"""Renderers on hand-built results: what Slack would refuse, and what a reader could misread."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from bot.render.approvals import render_request
from bot.render.common import MAX_CONTEXT_TEXT
from bot.render.fleet import render_digest
from core.domain.approvals import ApprovalRequest, Person, RequestKind, RequestStatus
from core.domain.models import Page, UserRef
from core.domain.reports import FleetTotals, LowBalanceReport
from tests.support.reports import quiet_digest

ADA = Person(slack_id="UADMIN1", name="Ada Admin")
BEA = Person(slack_id="UADMIN2", name="Bea Approver")


def context_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


def test_a_huge_reject_reason_is_clipped_in_the_message_and_both_names_stay() -> None:
    """A 10,000-character reject reason still fits Slack's 3,000-character context element; names survive."""
    at = datetime(2026, 5, 3, 9, 30, tzinfo=UTC)
    request = ApprovalRequest(
        id=7,
        kind=RequestKind.ADJUSTMENT,
        status=RequestStatus.REJECTED,
        user=UserRef(user_id=str(uuid.uuid4()), email="x@example.com"),
        delta=5_000,
        reason="refund",
        remaining_at_request=1_000,
        correction=None,
        requester=ADA,
        requested_at=at,
        expires_at=at + timedelta(hours=24),
        decider=BEA,
        decided_at=at,
        decision_reason="no " * 3_500,
        balance_before=None,
        balance_after=None,
        ledger_row_id=None,
        channel="CAPPROVALS",
        message_ts="1.0",
    )
    [line] = context_texts(render_request(request).as_kwargs()["blocks"])
    assert len(line) <= MAX_CONTEXT_TEXT
    assert "Rejected" in line and "Bea Approver" in line and "Requested by Ada Admin" in line and "…" in line


def test_digest_times_are_shown_in_utc_whatever_the_session_time_zone() -> None:
    """A digest generated at 11:30 +02:00 says 09:30 UTC, and so does the previous digest's time."""
    plus_two = timezone(timedelta(hours=2))
    low = LowBalanceReport(
        threshold=10_000,
        total=0,
        negative=0,
        burn_window_days=7,
        rows=[],
        offset=0,
        page=Page(number=1, count=1),
    )
    report = quiet_digest(
        low,
        FleetTotals(users=0, remaining=0, used=0, cost=Decimal(0), negative=0),
        generated_at=datetime(2026, 5, 3, 11, 30, tzinfo=plus_two),
        previous_at=datetime(2026, 5, 2, 1, 15, tzinfo=plus_two),
    )
    header = context_texts(render_digest(report).as_kwargs()["blocks"])[0]
    assert header.startswith("2026-05-03 09:30 UTC") and "2026-05-01 23:15 UTC" in header


def test_the_check_reply_built_as_json_is_block_kit_that_slack_sdk_accepts() -> None:
    """The check reply skips slack_sdk's objects for speed: every block must still parse back through
    slack_sdk and pass its validators unchanged, also with texts far past Slack's limits."""
    from slack_sdk.models.blocks import Block

    from bot.render.check import render_check
    from core.domain.check_report import CheckReport
    from core.domain.models import (
        Balance,
        BreakdownRow,
        Finding,
        FindingKind,
        GrantSource,
        InitialGrant,
        Operation,
        Verdict,
    )

    at = datetime(2026, 5, 3, 9, 30, tzinfo=UTC)
    long_email = "a" * 400 + "@example.com"
    report = CheckReport(
        user=UserRef(user_id=str(uuid.uuid4()), email=long_email),
        balance=Balance(
            current_used=10**12,
            calculated_used=5,
            current_cost=Decimal("12345678.90"),
            calculated_cost=Decimal("0.01"),
            current_remaining=-(10**12),
            expected_remaining=7,
            initial_grant=InitialGrant(tokens=5_000_000, source=GrantSource.TIER, description="x" * 5_000),
            admin_grants=1,
            admin_deductions=2,
            ledger_rows=60,
            failed_rows=3,
        ),
        verdict=Verdict.PROBLEM,
        findings=[Finding(kind=k, tokens=10**9, rows=3, summary="y" * 2_000) for k in FindingKind],
        breakdown=[
            BreakdownRow(
                action_type=f"action_{i}" * 10,
                model_used="gpt-4",
                operations=10**6,
                failed_operations=1,
                tokens=10**12,
                cost=Decimal("1234.5678"),
                first_use=at,
                last_use=at,
            )
            for i in range(60)
        ],
        operations=[
            Operation(
                id=str(uuid.uuid4()),
                created_at=at,
                action_type="chat",
                model_used=None,
                tokens_used=10**9,
                cost_estimate=Decimal("12.5"),
                success=False,
                error_message="`boom`" * 100,
            )
            for _ in range(10)
        ],
        operations_total=60,
        page=Page(number=2, count=5),
    )
    blocks = render_check(report).as_kwargs()["blocks"]
    assert [b["type"] for b in blocks] == [
        "header", "context", "section", "divider", "section", "section", "section", "actions"
    ]  # fmt: skip
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None
        assert parsed.to_dict() == block  # to_dict() runs slack_sdk's validators, raising past a limit
