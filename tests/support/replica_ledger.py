"""Building one replica user: ledger rows as the product wrote them, and the balance they should give.

`UserBuilder` appends rows in time order and keeps the balance the configuration under test implies,
row by row, the plain way (never the bot's SQL):

- a successful `subscription_grant` SETS remaining to its tokens (the latest one governs);
- `admin_grant`, `trial_grant`, `token_pack_purchase` add; `admin_deduct` takes away;
- every other successful row is usage: it takes from remaining and adds to lifetime used and cost
  (`cost_estimate` summed as stored: the profile's total cost is in the same unit);
- failed rows change nothing;
- a user whose current profile row has a tier with a grant amount starts from it; anyone else starts
  from 0, so the first admin_grant, counted once, is the initial grant.

Costs follow the product's TOKEN_COSTS table in the unit its tracking code stored (hundredths of a cent,
per 1,000 input and output tokens) and are kept exact, so no cost drift is planted by accident.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.support.replica_schema import DEDUCT_TYPES, GRANT_TYPES, RESET_TYPES, TIER_AMOUNTS, USAGE_TYPES

# model -> (input, output) in cost_estimate's unit per 1,000 tokens (facts §5 TOKEN_COSTS times 100).
PRICES = {
    "gpt-5": (500, 1500),
    "gpt-5-mini": (300, 900),
    "gpt-5-nano": (100, 300),
    "gpt-4o": (250, 1000),
    "gpt-4o-mini": (15, 60),
}
TEXT_MODELS = ("gpt-5-mini", "gpt-4o", "gpt-5", "gpt-4o-mini", "gpt-5-nano")
TEXT_ACTIONS = tuple(
    a for a in USAGE_TYPES if a not in ("audio_generation", "image_generation", "transcription")
)
ERRORS = ("OpenAI API error 429: rate limit exceeded", "Request timed out after 60s", "OpenAI API error 500")


def day(month: int, dom: int, hour: int = 9, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, month, dom, hour, minute, second, tzinfo=UTC)


def user_uuid(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vibrationfit-replica/user/{key}"))


def email_of(key: str) -> str:
    return f"{key.replace('_', '.')}@vibrationfit.example"


@dataclass(frozen=True)
class State:
    """A profile's three balance columns."""

    remaining: int
    used: int
    cost: Decimal


@dataclass
class ProfileRow:
    id: str
    version: int
    active: bool
    draft: bool
    state: State
    tier: str | None
    created_at: datetime
    updated_at: datetime
    parent: str | None = None


@dataclass
class UserBuilder:
    key: str
    tier: str | None = None
    """The current profile row's membership tier (tier_type)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[ProfileRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.user_id = user_uuid(self.key)
        self.email = email_of(self.key)
        self.rng = random.Random(self.key)
        self.remaining = TIER_AMOUNTS.get(self.tier or "", 0)
        self.used = 0
        self.cost = Decimal(0)
        self.last: datetime | None = None

    def state(self) -> State:
        return State(self.remaining, self.used, self.cost)

    def add(
        self,
        action: str,
        model: str,
        tokens: int,
        at: datetime,
        *,
        inputs: int = 0,
        outputs: int = 0,
        cost: Decimal = Decimal(0),
        success: bool = True,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        assert self.last is None or at >= self.last, (self.key, at)
        assert not (action == "admin_grant" and self.tier and tokens == TIER_AMOUNTS[self.tier]), (
            "an admin_grant of the tier amount would be read as the logged initial grant"
        )
        self.last = at
        self.rows.append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.user_id}/{len(self.rows)}")),
                "user_id": self.user_id,
                "action_type": action,
                "model_used": model,
                "tokens_used": tokens,
                "input_tokens": inputs,
                "output_tokens": outputs,
                "cost_estimate": cost,
                "success": success,
                "error_message": error,
                "metadata": metadata if metadata is not None else {},
                "created_at": at,
            }
        )
        if not success:
            return
        if action in RESET_TYPES:
            self.remaining = tokens
        elif action in GRANT_TYPES:
            self.remaining += tokens
        elif action in DEDUCT_TYPES:
            self.remaining -= tokens
        else:
            assert action in USAGE_TYPES, action
            self.remaining -= tokens
            self.used += tokens
            self.cost += cost

    def grant(self, action: str, model: str, tokens: int, at: datetime, **metadata: Any) -> None:
        before = self.remaining
        after = tokens if action in RESET_TYPES else before + tokens
        if action in DEDUCT_TYPES:
            after = before - tokens
        extra = (
            {"balance_before": before, "balance_after": after} if model in ("subscription", "trial") else {}
        )
        self.add(action, model, tokens, at, metadata={**metadata, **extra})

    def usage(self, total: int, start: datetime, end: datetime, n: int, *, failed: int = 0) -> None:
        """`n` successful usage rows of `total` tokens in all, and `failed` failed ones, spread over [start, end)."""
        images = [self.rng.randint(150, 900) for _ in range(n // 8)]
        rest = total - sum(images)
        weights = [self.rng.uniform(0.5, 1.5) for _ in range(n - len(images))]
        sizes = [rest * w // sum(weights) for w in weights[:-1]]
        sizes = [int(s) for s in sizes] + [rest - int(sum(sizes))]
        assert min(sizes) > 0, (self.key, sizes)
        kinds: list[tuple[str, int]] = [("image", s) for s in images] + [("text", s) for s in sizes]
        kinds += [("failed", self.rng.randint(800, 6000)) for _ in range(failed)]
        self.rng.shuffle(kinds)
        step = (end - start) / len(kinds)
        for i, (kind, size) in enumerate(kinds):
            at = start + step * i + timedelta(seconds=self.rng.randint(0, int(step.total_seconds() / 3)))
            self._usage_row(kind, size, at.replace(microsecond=0))

    def _usage_row(self, kind: str, size: int, at: datetime) -> None:
        rng = self.rng
        if kind == "image":
            # imageService passed tokens_used 1 and input_tokens = prompt length; dall-e-3 stored 40 cents times 100.
            self.add("image_generation", "dall-e-3", size, at, inputs=size, cost=Decimal(4000))
            return
        roll = rng.random()
        if kind == "text" and roll < 0.08:
            # tts-1 and whisper-1: tokens are characters or seconds + words; not in TOKEN_COSTS, so cost 0.
            self.add("audio_generation", "tts-1", size, at, metadata={"voice": "alloy"})
            return
        if kind == "text" and roll < 0.14:
            self.add("transcription", "whisper-1", size, at)
            return
        action, model = rng.choice(TEXT_ACTIONS), rng.choice(TEXT_MODELS)
        inputs = max(1, round(size * rng.uniform(0.35, 0.8)))
        outputs = size - inputs
        price_in, price_out = PRICES[model]
        cost = Decimal(inputs * price_in + outputs * price_out) / 1000
        if kind == "failed":
            self.add(action, model, size, at, inputs=inputs, outputs=outputs, cost=cost, success=False,
                     error=rng.choice(ERRORS))  # fmt: skip
        else:
            self.add(action, model, size, at, inputs=inputs, outputs=outputs, cost=cost)

    def profile(
        self,
        state: State,
        *,
        version: int = 1,
        active: bool = False,
        draft: bool = False,
        tier: str | None = None,
        created: datetime,
        updated: datetime,
        parent: int | None = None,
    ) -> None:
        """One user_profiles row; `tier` defaults to the builder's (the current row's) tier."""
        self.profiles.append(
            ProfileRow(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.user_id}/profile/{version}")),
                version=version,
                active=active,
                draft=draft,
                state=state,
                tier=self.tier if tier is None else (tier or None),
                created_at=created,
                updated_at=updated,
                parent=None
                if parent is None
                else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.user_id}/profile/{parent}")),
            )
        )

    def current(self) -> ProfileRow:
        """The row the product shows: the active non-draft one, else the latest updated non-draft one."""
        active = [p for p in self.profiles if p.active and not p.draft]
        if active:
            [row] = active
            return row
        return max((p for p in self.profiles if not p.draft), key=lambda p: p.updated_at)
