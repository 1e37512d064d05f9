"""A user's history and the auditors' export, as values: what the bot's own tables say it did, and when.

The source of truth is the bot's audit trail (approval_requests and audit_log), never the product's ledger:
the history shows what tokens-bot asked, decided and wrote, including what it decided not to write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.domain.approvals import Correction, Person, RequestKind
from core.domain.models import Frozen, Page, UserRef


class HistoryEvent(StrEnum):
    """The events core.store.requests writes to the audit log, one per step of a request's life."""

    REQUESTED = "requested"
    VOTED = "voted"
    """An approval that did not yet complete the request's quorum (TOKENS_QUORUM)."""
    APPLIED = "applied"
    CORRECTED = "corrected"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STALE = "stale"
    APPLYING = "applying"
    """A fix was approved; its items are applied after it (one `fix_applied` each)."""
    FIX_APPLIED = "fix_applied"


class HistoryEntry(Frozen):
    """One audit-log event with the request it belongs to.

    `balance_before`/`balance_after` are what the event did to the balance: for `requested`, the balance when
    asked and the one the request would give; for `applied` and `corrected`, the balance the approval
    actually moved from and to; None for events that changed nothing.
    """

    audit_id: int
    at: datetime
    event: HistoryEvent
    actor: Person
    request_id: int
    kind: RequestKind
    delta: int | None
    correction: Correction | None
    balance_before: int | None
    balance_after: int | None
    ledger_row_id: str | None
    """The product ledger row the approval wrote: only on `applied` adjustments (corrections write none)."""
    reason: str | None
    """The reason recorded with the event: the requester's on `requested` and `applied`, the rejecter's on
    `rejected` ("no reason given" on rejections recorded before Reject asked for a reason)."""


class HistoryReport(Frozen):
    """`/tokens history`: one page of a user's audit trail, newest first, out of `total` events."""

    user: UserRef
    entries: list[HistoryEntry]
    total: int
    requests: int
    offset: int
    page: Page


class AuditRecord(Frozen):
    """One audit-log row as `tokens-bot audit-export` writes it, with the request's who and what.

    `details` is the stored JSON's own text (PostgreSQL's rendering of the jsonb), so an export carries
    exactly what was recorded: no number passes through a float on the way out.
    """

    request_id: int
    kind: str
    user_id: str
    user_email: str | None
    event: str
    actor: str
    actor_name: str
    at: datetime
    details: str

    def head(self) -> dict[str, Any]:
        """Every field but `details`, as JSON-ready values: times in ISO 8601, UTC."""
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "user_id": self.user_id,
            "user_email": self.user_email,
            "event": self.event,
            "actor": self.actor,
            "actor_name": self.actor_name,
            "at": iso_utc(self.at),
        }


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC, to the microsecond the database keeps: what auditors sort and compare."""
    return moment.astimezone(UTC).isoformat()
