"""Ledgers crafted so that each has exactly one cause of drift, with the fix each cause must get: the
users the fix tests build, on the guide's tables or on an odd product schema."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from core.domain.fixes import Cause, FixKind, WrongSide
from tests.support.ledger import add_usage, add_user
from tests.support.product_variants import Variant, insert_rows, insert_user

GRANT = 100_000


def failed_charged(conn: Connection, n: int) -> str:
    """The profile charged failed operations: it counts `n` more used tokens than the ledger."""
    user = add_user(conn, remaining=GRANT - 4_000 - n, used=4_000 + n, cost="0.04")
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=4_000, cost_cents="4", seconds=10)
    add_usage(conn, user, tokens=n, success=False, error="upstream 500", seconds=20)
    return user


def uncharged(conn: Connection, n: int) -> str:
    """Logged, successful usage of `n` tokens the profile never subtracted."""
    user = add_user(conn, remaining=GRANT - 4_000, used=4_000)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=4_000, seconds=10)
    add_usage(conn, user, tokens=n, seconds=5_000)
    return user


def duplicated_usage(conn: Connection, n: int) -> str:
    """One operation of `n` tokens logged twice seconds apart; the profile charged it once."""
    user = add_user(conn, remaining=GRANT - n, used=n, cost="0.02")
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    for second in (100, 102):
        add_usage(conn, user, tokens=n, cost_cents="2", seconds=second)
    return user


def duplicated_grant(conn: Connection, n: int) -> str:
    """An extra grant of `n` logged twice (a backfill run twice); the balance counted it once."""
    user = add_user(conn, remaining=GRANT + n - 1_000, used=1_000)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=1_000, seconds=10)
    for second in (500, 501):
        add_usage(conn, user, tokens=n, action="admin_grant", model=None, seconds=second)
    return user


def unlogged_grant(conn: Connection, n: int) -> str:
    """A grant of `n` the balance holds but the ledger never saw."""
    user = add_user(conn, remaining=GRANT - 1_000 + n, used=1_000)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=1_000, seconds=10)
    return user


def before_tracking(conn: Connection, n: int) -> str:
    """`n` tokens used (and charged) before the ledger logged usage: the profile is right."""
    user = add_user(conn, remaining=GRANT - n, used=n, cost="0.37")
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    return user


def negative(conn: Connection, n: int) -> str:
    """Logged usage that took the balance `n` below zero: a real change of entitlement."""
    user = add_user(conn, remaining=-n, used=GRANT + n)
    add_usage(conn, user, tokens=GRANT, action="admin_grant", model=None)
    add_usage(conn, user, tokens=GRANT + n, seconds=10)
    return user


# cause, how to craft it, the fix's kind and side, the ledger rows it inserts
CASES: list[tuple[Cause, Callable[[Connection, int], str], FixKind, WrongSide, int]] = [
    (Cause.FAILED_CHARGED, failed_charged, FixKind.PROFILE_CORRECTION, WrongSide.PROFILE, 0),
    (Cause.UNCHARGED, uncharged, FixKind.PROFILE_CORRECTION, WrongSide.PROFILE, 0),
    (Cause.DUPLICATES, duplicated_usage, FixKind.LEDGER_REVERSAL, WrongSide.LEDGER, 1),
    (Cause.DUPLICATES, duplicated_grant, FixKind.LEDGER_REVERSAL, WrongSide.LEDGER, 1),
    (Cause.UNLOGGED_GRANT, unlogged_grant, FixKind.LEDGER_BACKFILL, WrongSide.LEDGER, 1),
    (Cause.BEFORE_TRACKING, before_tracking, FixKind.LEDGER_BACKFILL, WrongSide.LEDGER, 1),
    (Cause.NEGATIVE, negative, FixKind.ADJUSTMENT, WrongSide.ENTITLEMENT, 1),
]
# The sides a cause's fix must never change: charging the profile for a ledger's duplicate, "correcting"
# the ledger for a grant the profile holds, or logging rows for what the profile charged wrongly.
NEVER: dict[Cause, set[WrongSide]] = {
    Cause.FAILED_CHARGED: {WrongSide.LEDGER},
    Cause.UNCHARGED: {WrongSide.LEDGER},
    Cause.DUPLICATES: {WrongSide.PROFILE},
    Cause.UNLOGGED_GRANT: {WrongSide.PROFILE},
    Cause.BEFORE_TRACKING: {WrongSide.PROFILE},
    Cause.NEGATIVE: {WrongSide.PROFILE, WrongSide.LEDGER},
}


def load_fixable(conn: Connection, v: Variant) -> None:
    """Three users of the variant, each of one cause, in the variant's own column types."""
    at = "2026-01-01 00:00:00"
    users = [
        {"id": "fix-failed", "key": "failed", "remaining": GRANT - 5_000, "used": 5_000, "cost": "0.04"},
        {"id": "fix-twice", "key": "twice", "remaining": GRANT - 900, "used": 900, "cost": "0.05"},
        {"id": "fix-unlogged", "key": "unlogged", "remaining": GRANT + 30_000, "used": 0, "cost": "0"},
    ]
    for user in users:
        insert_user(conn, v, user)
    grant = {"action_type": "admin_grant", "model_used": None, "tokens_used": GRANT, "created_at": at}
    insert_rows(
        conn,
        v,
        [
            *({**grant, "user_id": u["id"]} for u in users),
            {
                "user_id": "fix-failed",
                "tokens_used": 4_000,
                "cost_estimate": 4,
                "created_at": "2026-01-02 00:00:00",
            },
            {
                "user_id": "fix-failed",
                "tokens_used": 1_000,
                "success": False,
                "created_at": "2026-01-03 00:00:00",
            },
            {
                "user_id": "fix-twice",
                "tokens_used": 900,
                "cost_estimate": 5,
                "created_at": "2026-01-02 00:00:00",
            },
            {
                "user_id": "fix-twice",
                "tokens_used": 900,
                "cost_estimate": 5,
                "created_at": "2026-01-02 00:00:01",
            },
        ],
    )
