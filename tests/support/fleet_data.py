"""A database of its own for fleet tests, and a crafted fleet in which every list has a known answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from tests.support.ledger import add_usage, add_user


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def craft_fleet(conn: Connection) -> dict[str, str]:
    """Users whose balances, discrepancies and causes are known by construction; keyed by a short name.

    Expected discrepancies (used, remaining) with the default settings:
      clean 0/0, failed +2,500/-2,500, unlogged 0/+600,000, negative 0/0 (balance -5,000),
      low 0/0 (balance 3,000, 7,000 used in the last week), dupes +0/-0 but 2 duplicate rows,
      before_tracking +50,000/0, small +50/-50, annual_logged 0/0, drift 0/0 with cost drift,
      heavy 0/0 (highest usage), deducted 0/+1,000.
    """
    users: dict[str, str] = {}

    def user(name: str, **kwargs: object) -> str:
        users[name] = add_user(conn, email=f"{name}@fleet.example", **kwargs)  # type: ignore[arg-type]
        return users[name]

    u = user("clean", remaining=500_000 - 3_000, used=3_000)
    add_usage(conn, u, tokens=500_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=3_000, seconds=10)

    u = user("failed", remaining=1_000_000 - 4_000 - 2_500, used=4_000 + 2_500)
    add_usage(conn, u, tokens=1_000_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=4_000, seconds=10)
    add_usage(conn, u, tokens=1_500, success=False, error="timeout", seconds=60)
    add_usage(conn, u, tokens=1_000, success=False, error="rate limited", seconds=120)

    u = user("unlogged", tier="monthly", remaining=2 * 600_000 - 10_000, used=10_000)
    add_usage(conn, u, tokens=10_000, seconds=5)

    u = user("negative", remaining=-5_000, used=105_000)
    add_usage(conn, u, tokens=100_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=105_000, seconds=5)

    u = user("low", remaining=3_000, used=97_000)
    add_usage(conn, u, tokens=100_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=90_000, seconds=5)
    add_usage(conn, u, tokens=4_000, at=days_ago(3))
    add_usage(conn, u, tokens=3_000, at=days_ago(1))

    u = user("dupes", remaining=200_000 - 3 * 700, used=3 * 700)
    add_usage(conn, u, tokens=200_000, action="admin_grant", model=None)
    for second in (100, 101, 102):
        add_usage(conn, u, tokens=700, input_tokens=300, output_tokens=400, seconds=second)

    user("before_tracking", remaining=0, used=50_000)

    u = user("small", remaining=300_000 - 1_050, used=1_050)
    add_usage(conn, u, tokens=300_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=1_000, seconds=5)

    u = user("annual_logged", tier="annual", remaining=5_000_000 + 20_000 - 8_000, used=8_000)
    add_usage(conn, u, tokens=5_000_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=20_000, action="admin_grant", model=None, seconds=1)
    add_usage(conn, u, tokens=8_000, seconds=5)

    u = user("drift", remaining=400_000 - 10_000, used=10_000, cost="0.50")
    add_usage(conn, u, tokens=400_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=10_000, model="gpt-4", input_tokens=5_000, output_tokens=5_000, cost_cents="50")

    u = user("heavy", remaining=10_000_000 - 9_000_000, used=9_000_000, cost="90.00")
    add_usage(conn, u, tokens=10_000_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=9_000_000, cost_cents="9000", seconds=5)

    u = user("deducted", remaining=700_000 - 5_000 - 1_000 + 1_000, used=5_000)
    add_usage(conn, u, tokens=700_000, action="admin_grant", model=None)
    add_usage(conn, u, tokens=5_000, seconds=5)
    add_usage(conn, u, tokens=1_000, action="admin_deduct", model=None, seconds=6)
    return users


def craft_approved_grants(conn: Connection) -> dict[str, str]:
    """Users holding grants tokens-bot approved of exactly a tier amount; every one reconciles (0/0).

    approved_tier: monthly, first cycle never logged, then an approved +600,000 (an extra grant).
    approved_beside_logged: monthly, an approved +600,000 first, then the product's logged 600,000
    (the initial grant), so both count once.
    """
    users: dict[str, str] = {}
    approved = {"source": "slack", "request_id": 9_001, "reason": "second monthly cycle"}

    u = users["approved_tier"] = add_user(
        conn, email="approved_tier@fleet.example", tier="monthly", remaining=2 * 600_000 - 20_000, used=20_000
    )
    add_usage(conn, u, tokens=20_000, seconds=5)
    add_usage(conn, u, tokens=600_000, action="admin_grant", model=None, metadata=approved, seconds=10)

    u = users["approved_beside_logged"] = add_user(
        conn, email="approved_beside@fleet.example", tier="monthly", remaining=2 * 600_000 - 1_000, used=1_000
    )
    add_usage(conn, u, tokens=600_000, action="admin_grant", model=None, metadata=approved, seconds=0)
    add_usage(conn, u, tokens=600_000, action="admin_grant", model=None, seconds=10)
    add_usage(conn, u, tokens=1_000, seconds=20)
    return users
