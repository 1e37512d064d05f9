"""What the bot's Home tab shows one person, by what they may do."""

from __future__ import annotations

from core.domain.alerts import FleetSnapshot
from core.domain.approvals import ApprovalRequest
from core.domain.models import Frozen


class HomeReport(Frozen):
    """`viewer` (admins, approvers and viewers) sees numbers, pending requests and the latest decisions;
    an approver also what waits for their vote, an admin their own pending requests. Anyone else: nothing.
    `fleet` is what the last scan or digest stored (None before the first)."""

    viewer: bool
    waiting: tuple[ApprovalRequest, ...] = ()
    mine: tuple[ApprovalRequest, ...] = ()
    others_pending: int = 0
    fleet: FleetSnapshot | None = None
    decisions: tuple[ApprovalRequest, ...] = ()
