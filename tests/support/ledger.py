"""Crafting product rows for tests: users, profiles and ledger entries with exactly the values a test needs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def add_user(
    conn: Connection,
    *,
    remaining: int = 0,
    used: int = 0,
    cost: Decimal | str = "0",
    tier: str | None = None,
    email: str | None = None,
    user_id: uuid.UUID | str | None = None,
) -> str:
    """A profile (and an auth.users row when an email is given) with the cached values given; its id as
    text, the way core.domain.models.UserRef holds every product user id."""
    user_id = user_id or uuid.uuid4()
    conn.execute(
        text(
            "INSERT INTO user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,"
            " vibe_assistant_tokens_used, vibe_assistant_total_cost) VALUES (:u, :t, :r, :used, :c)"
        ),
        {"u": user_id, "t": tier, "r": remaining, "used": used, "c": Decimal(cost)},
    )
    if email is not None:
        conn.execute(text("INSERT INTO auth.users (id, email) VALUES (:u, :e)"), {"u": user_id, "e": email})
    return str(user_id)


def add_usage(
    conn: Connection,
    user_id: uuid.UUID | str,
    *,
    tokens: int,
    action: str = "chat_conversation",
    model: str | None = "gpt-4o",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cost_cents: Decimal | str = "0",
    success: bool = True,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
    at: datetime | None = None,
    seconds: float = 0,
) -> uuid.UUID:
    """One ledger row; `seconds` offsets it from a fixed base time so tests control ordering."""
    row_id = uuid.uuid4()
    conn.execute(
        text(
            "INSERT INTO token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,"
            " output_tokens, cost_estimate, success, error_message, metadata, created_at)"
            " VALUES (:id, :u, :a, :m, :t, :i, :o, :c, :s, :e, CAST(:md AS jsonb), :at)"
        ),
        {
            "id": row_id,
            "u": user_id,
            "a": action,
            "m": model,
            "t": tokens,
            "i": input_tokens,
            "o": output_tokens,
            "c": Decimal(cost_cents),
            "s": success,
            "e": error,
            "md": json.dumps(metadata or {}),
            "at": at or BASE_TIME + timedelta(seconds=seconds),
        },
    )
    return row_id


def spend(
    conn: Connection, user_id: uuid.UUID | str, tokens: int, *, cost_cents: Decimal | str = "0"
) -> uuid.UUID:
    """What the product does for one successful operation: a ledger row and the cached balance, together."""
    row_id = add_usage(conn, user_id, tokens=tokens, cost_cents=cost_cents, at=datetime.now(UTC))
    conn.execute(
        text(
            "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining - :t,"
            " vibe_assistant_tokens_used = vibe_assistant_tokens_used + :t,"
            " vibe_assistant_total_cost = vibe_assistant_total_cost + :c / 100 WHERE user_id = :u"
        ),
        {"t": tokens, "c": Decimal(cost_cents), "u": user_id},
    )
    return row_id


def remaining(conn: Connection, user_id: uuid.UUID | str) -> int:
    return int(
        conn.execute(
            text("SELECT vibe_assistant_tokens_remaining FROM user_profiles WHERE user_id = :u"),
            {"u": user_id},
        ).scalar_one()
    )


def remaining_of(engine: Engine, user_id: uuid.UUID | str) -> int:
    """`remaining` in a connection of its own."""
    with engine.connect() as conn:
        return remaining(conn, user_id)
