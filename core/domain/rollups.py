"""What folding the ledger into per-user totals did, what verifying them found, and what a scan read."""

from __future__ import annotations

from datetime import datetime

from core.domain.models import Frozen


class LedgerRead(Frozen):
    """How a fleet scan read the ledger: folded totals up to `folded_to` plus the rows after it, or, when
    `full_reason` says why the totals could not be used, every row."""

    folded_to: datetime | None = None
    full_reason: str | None = None


class FoldResult(Frozen):
    ran: bool
    """False when another fold held the lock (it is doing the same work)."""
    full: bool = False
    full_reason: str | None = None
    previous: datetime | None = None
    watermark: datetime | None = None
    users: int = 0
    """Users whose totals the rows between the two watermarks changed."""
    relooked: bool = False
    """Whether this fold recounted the relooked hours to find rows inserted late (at most one fold every
    TOKENS_ROLLUP_RELOOK_EVERY_MINUTES does; the others leave them to the next that does)."""
    late_hours: int = 0
    """Folded hours that had gained rows since they were folded (rows inserted late)."""
    late_users: int = 0
    """Users whose totals were re-read in full because of those rows."""


class Mismatch(Frozen):
    """A user whose folded totals differ from a full scan's, field by field (folded, ledger), as text."""

    user_id: str
    fields: dict[str, tuple[str, str]]


class VerifyResult(Frozen):
    watermark: datetime | None
    users: int
    """Users compared (with totals folded, or rows in the ledger up to the watermark)."""
    mismatches: list[Mismatch]


class SignalsKept(Frozen):
    """What keeping the finding signals of the largest discrepancies did (core.store.signal_cache)."""

    counted: int
    """Users whose signals were counted from their rows (none were kept for them, or their rows changed)."""
    reused: int
    """Users whose kept signals still held."""
    forgotten: int
    """Users no longer among the largest discrepancies, whose kept signals were dropped."""
