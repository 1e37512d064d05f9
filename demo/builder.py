"""Drawing users and operations from one seeded generator: the order of draws is part of the data set."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.settings import ModelPrice
from demo.catalog import (
    ACTION_NAMES,
    ACTION_WEIGHTS,
    ACTIONS,
    CLIENTS,
    DEMO_NAMESPACE,
    ERRORS,
    PRICES,
    REFERENCE_TIME,
    SEED,
    price_cents,
)
from demo.rows import Row, Spec, User


class Builder:
    """Draws every user from one seeded generator; the order of draws is part of the data set."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.users: list[User] = []

    # -- primitives ----------------------------------------------------------------------------------

    def user(self, email: str, tier: str | None, signup: datetime) -> User:
        user = User(id=uuid.uuid5(DEMO_NAMESPACE, f"user/{email}"), email=email, tier=tier, signup=signup)
        self.users.append(user)
        return user

    def admin(self, user: User, action: str, amount: int, at: datetime, reason: str, by: str) -> Row:
        row = Row(
            id=user.new_id(),
            action_type=action,
            model_used=None,
            tokens_used=amount,
            input_tokens=None,
            output_tokens=None,
            # The product logs grants with no cost at all: a NULL, not a zero.
            cost_estimate=None,
            success=True,
            error_message=None,
            metadata={"reason": reason, "by": by},
            created_at=at,
        )
        user.rows.append(row)
        return row

    def grant(self, user: User, amount: int, at: datetime, reason: str, by: str = "billing-webhook") -> Row:
        return self.admin(user, "admin_grant", amount, at, reason, by)

    def draw(self, action: str | None = None, *, failure_rate: float = 0.03) -> Spec:
        rng = self.rng
        action = action or rng.choices(ACTION_NAMES, ACTION_WEIGHTS)[0]
        shape = ACTIONS[action]
        model = rng.choice(shape.models)
        input_tokens = rng.randint(*shape.input)
        output_tokens = rng.randint(*shape.output)
        if action == "image_generation":
            output_tokens *= 1_000
        if rng.random() < failure_rate:
            # A failed call is logged with the prompt it sent and nothing back.
            return Spec(action, model, input_tokens, 0, success=False)
        return Spec(action, model, input_tokens, output_tokens)

    def operation(
        self,
        user: User,
        spec: Spec,
        at: datetime,
        *,
        prices: Mapping[str, ModelPrice] = PRICES,
        metadata: dict[str, Any] | None = None,
    ) -> Row:
        row_id = user.new_id()
        row = Row(
            id=row_id,
            action_type=spec.action,
            model_used=spec.model,
            tokens_used=spec.tokens,
            input_tokens=spec.input_tokens,
            output_tokens=spec.output_tokens,
            cost_estimate=price_cents(spec.model, spec.input_tokens, spec.output_tokens, prices),
            success=spec.success,
            error_message=None if spec.success else self.rng.choice(ERRORS),
            # Request ids are unique per operation, so only a showcase repeats one.
            metadata=(
                {"request_id": f"req_{row_id.hex[:24]}", "client": self.rng.choice(CLIENTS)}
                if metadata is None
                else metadata
            ),
            created_at=at,
        )
        user.rows.append(row)
        return row

    def schedule(self, count: int, start: datetime, end: datetime) -> list[datetime]:
        """`count` sorted times at least 7 s apart, so no two operations look like a doubled entry."""
        slots = max(int((end - start).total_seconds()) // 10, count)
        return [
            start + timedelta(seconds=slot * 10 + self.rng.randint(0, 3))
            for slot in sorted(self.rng.sample(range(slots), count))
        ]

    def specs(self, count: int | None, budget: int, *, failure_rate: float = 0.03) -> list[Spec]:
        """Operations whose charged tokens stay within `budget`; `count=None` fills it nearly to the end."""
        drawn: list[Spec] = []
        used = 0
        limit = 10_000 if count is None else count
        while len(drawn) < limit:
            spec = self.draw(failure_rate=failure_rate)
            if spec.success and used + spec.tokens > budget:
                # Out of budget: a last few small requests, as a user running dry would still make.
                spec = self.draw("prompt_suggestions", failure_rate=0)
                if used + spec.tokens > budget:
                    break
            drawn.append(spec)
            used += spec.tokens if spec.success else 0
        return drawn

    def usage(
        self, user: User, specs: list[Spec], start: datetime, end: datetime = REFERENCE_TIME
    ) -> list[Row]:
        times = self.schedule(len(specs), start, end - timedelta(hours=1))
        return [self.operation(user, spec, at) for spec, at in zip(specs, times, strict=True)]
