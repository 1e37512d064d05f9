"""The demo's rows and users as the builder draws them, before they are written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from demo.catalog import DEMO_NAMESPACE, dollars


@dataclass
class Row:
    id: uuid.UUID
    action_type: str
    model_used: str | None
    tokens_used: int
    input_tokens: int | None
    output_tokens: int | None
    cost_estimate: Decimal | None
    success: bool | None
    error_message: str | None
    metadata: dict[str, Any]
    created_at: datetime

    @property
    def kind(self) -> str:
        """The action type as the core reads it: case and surrounding spaces do not matter."""
        return self.action_type.strip().lower()

    @property
    def charged(self) -> bool:
        """Counts toward `calculated_used`: a successful (or NULL-success) consumption row."""
        return self.success is not False and self.kind not in ("admin_grant", "admin_deduct")


@dataclass(frozen=True)
class Spec:
    """An operation before it has a time and an id: drawn first so a budget can be respected."""

    action: str
    model: str
    input_tokens: int
    output_tokens: int
    success: bool = True

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class User:
    id: uuid.UUID
    email: str
    tier: str | None
    signup: datetime
    rows: list[Row] = field(default_factory=list)
    # A tier grant never logged as admin_grant (tier-only users): the core takes it from the tier.
    unlogged_initial: int = 0
    # Cached values that drifted from the ledger (showcase users); None means "what the ledger says".
    used: int | None = None
    remaining: int | None = None
    cost: Decimal | None = None
    # A profile whose balance columns are NULL (the product created it before any balance was set).
    unset: bool = False

    def new_id(self) -> uuid.UUID:
        return uuid.uuid5(DEMO_NAMESPACE, f"usage/{self.email}/{len(self.rows)}")

    def ledger_used(self) -> int:
        return sum(r.tokens_used for r in self.rows if r.charged)

    def ledger_cents(self) -> Decimal:
        return sum((r.cost_estimate or Decimal(0) for r in self.rows if r.charged), Decimal(0))

    def ledger_remaining(self) -> int:
        """The guide's Step 4 over this user's own rows; the core computes the same from the database."""
        grants = sum(r.tokens_used for r in self.rows if r.success is not False and r.kind == "admin_grant")
        deducts = sum(r.tokens_used for r in self.rows if r.success is not False and r.kind == "admin_deduct")
        return self.unlogged_initial + grants - self.ledger_used() - deducts

    def profile(self) -> tuple[int | None, int | None, Decimal | None]:
        """(remaining, used, cost) as the profile caches them; all None for a profile never set."""
        if self.unset:
            return None, None, None
        return (
            self.ledger_remaining() if self.remaining is None else self.remaining,
            self.ledger_used() if self.used is None else self.used,
            dollars(self.ledger_cents()) if self.cost is None else self.cost,
        )
