"""Thousands of users of one cause, made in one statement each (INSERT ... SELECT generate_series), for
batch fixes. User ids derive from a prefix and a number, so a test knows them without reading them back."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

from sqlalchemy import Connection, text

GRANT = 100_000
USED = 4_000

# Per user `g`: an admin_grant, then the rows of the cause; the profile as the cause leaves it.
_LEDGER = {
    # The profile charged a failed operation of 1,000 + g tokens.
    "failed-charged": (
        "('chat_conversation', 'gpt-4o', 1000 + u.g, 0, false, 20)",
        ":grant - :used - (1000 + u.g)",
        ":used + 1000 + u.g",
    ),
    # One operation of 1,000 + g tokens logged twice seconds apart; the profile charged it once.
    "duplicates": (
        "('chat_conversation', 'gpt-4o', 1000 + u.g, 1, true, 100), ('chat_conversation', 'gpt-4o', 1000 + u.g, 1, true, 102)",
        ":grant - :used - (1000 + u.g)",
        ":used + 1000 + u.g",
    ),
}


def user_ids(prefix: str, count: int) -> list[str]:
    """The ids `seed_cause` gives users 1..count, as PostgreSQL prints them."""
    return [str(uuid.UUID(hashlib.md5(f"{prefix}{g}".encode()).hexdigest())) for g in range(1, count + 1)]


def seed_cause(conn: Connection, cause: str, prefix: str, count: int) -> list[str]:
    """`count` users of `cause` (failed-charged or duplicates), each also holding a clean 4,000-token
    operation; returns their ids in order."""
    extra, remaining, used = _LEDGER[cause]
    params = {"prefix": prefix, "n": count, "grant": GRANT, "used": USED}
    users = "SELECT md5(:prefix || g)::uuid AS id, g FROM generate_series(1, :n) g"
    conn.execute(
        text(
            "INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining, vibe_assistant_tokens_used,"
            f" vibe_assistant_total_cost) SELECT u.id, {remaining}, {used}, :used / 100000.0"
            f" + CASE WHEN :cause = 'duplicates' THEN 0.01 ELSE 0 END FROM ({users}) u"
        ),
        {**params, "cause": cause},
    )
    conn.execute(
        text(
            "INSERT INTO token_usage (user_id, action_type, model_used, tokens_used, cost_estimate, success,"
            " metadata, created_at)"
            " SELECT u.id, r.action, r.model, r.tokens, r.cents, r.ok, '{}'::jsonb,"
            " timestamptz '2026-01-01 00:00+00' + make_interval(secs => r.secs)"
            f" FROM ({users}) u CROSS JOIN LATERAL (VALUES ('admin_grant', NULL, :grant, 0, true, 0),"
            f" ('chat_conversation', 'gpt-4o', :used, 4, true, 10), {extra})"
            " AS r(action, model, tokens, cents, ok, secs)"
        ),
        params,
    )
    return user_ids(prefix, count)


def narrow_user(conn: Connection, *, remaining: int, used: int, cost: str = "0") -> str:
    """A profile in tests.test_odd_products_core's NARROW_PRODUCT (integer balances, no defaults)."""
    user = str(uuid.uuid4())
    conn.execute(
        text(
            "INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining, vibe_assistant_tokens_used,"
            " vibe_assistant_total_cost) VALUES (:u, :r, :used, :c)"
        ),
        {"u": user, "r": remaining, "used": used, "c": Decimal(cost)},
    )
    return user


def narrow_row(conn: Connection, user: str, action: str, tokens: int, second: int, *, cents: int = 0) -> None:
    """A ledger row in NARROW_PRODUCT: a CHECK-listed action type, model NOT NULL, integer cents."""
    conn.execute(
        text(
            "INSERT INTO token_usage (user_id, action_type, model_used, tokens_used, cost_estimate, success,"
            " metadata, created_at) VALUES (:u, :a, 'gpt-4o', :t, :c, true, '{}',"
            " timestamp '2026-01-01' + make_interval(secs => :s))"
        ),
        {"u": user, "a": action, "t": tokens, "c": cents, "s": second},
    )
