"""One logical dataset, loaded into every schema variant: users with known causes plus ordinary ones.

Values are plain text and numbers; `tests.support.product_variants` casts them to each variant's types.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from sqlalchemy import Connection

from tests.support.product_variants import Variant, insert_rows, insert_user

GRANT = "admin_grant"
DEDUCT = "admin_deduct"


def user_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{key}.variant.example"))


def email(key: str) -> str:
    return f"{key}@variant.example"


def at(day: int, seconds: int = 0) -> str:
    """A time in June 2025 (day 1..28) plus seconds, as text with an explicit UTC offset."""
    return f"2025-06-{day:02d} {seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}+00"


def named_users(v: Variant) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The users whose causes the tests name, and their ledger rows."""
    users: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def user(key: str, **profile: Any) -> str:
        uid = profile.pop("id", None) or user_id(key)
        users.append({"key": key, "id": uid, "email": profile.pop("email", email(key)), **profile})
        return uid

    def row(uid: str, tokens: int | str | None, **fields: Any) -> None:
        rows.append({"user_id": uid, "tokens_used": tokens, **fields})

    def grant(uid: str, tokens: int | None, when: str | None, **fields: Any) -> None:
        row(uid, tokens, action_type=GRANT, model_used=None, created_at=when, **fields)

    u = user("clean", tier="monthly", remaining=596_500, used=3_500, cost="0.35")
    grant(u, 600_000, at(1))
    row(u, 1_000, cost_estimate=10, created_at=at(2), input_tokens=400, output_tokens=600)
    row(u, 2_000, cost_estimate=20, created_at=at(3))
    row(u, 500, cost_estimate=5, created_at=at(4))

    u = user("failed_charged", remaining=92_000, used=8_000, cost="0.42")
    grant(u, 50_000, "2025-05-31 23:59:00+00", success=False)  # a failed grant is no grant, nor the first one
    grant(u, 100_000, at(1), cost_estimate=0)
    row(u, 5_000, cost_estimate=30, created_at=at(2))
    row(u, 3_000, cost_estimate=12, success=False, error_message="OpenAI API error 429", created_at=at(3))

    u = user("duplicates", tier="annual", remaining=4_998_000, used=2_000, cost="0.20")
    grant(u, 5_000_000, at(1), metadata=json.dumps({"note": "annual signup"}))
    for second in (0, 2):
        row(u, 1_234, cost_estimate=6, created_at=at(5, 600 + second), metadata='{"request_id": "req-1"}')
    row(u, 766, cost_estimate=8, created_at=at(6))

    u = user("null_cost_grants", remaining=66_000, used=4_000, cost="0.08")
    grant(u, 50_000, at(1))
    grant(u, 20_000, at(9), success=None)
    row(u, 4_000, cost_estimate=8, created_at=at(10))

    u = user("null_tokens", tier="monthly", remaining=598_000, used=2_000, cost="0.11")
    grant(u, 600_000, at(1))
    row(u, None, cost_estimate=3, created_at=at(2))
    row(u, 1_500, cost_estimate=6, created_at=at(3))
    row(u, 200, action_type=None, cost_estimate=1, created_at=at(4))
    row(u, 300, action_type="", cost_estimate=1, created_at=at(5))

    u = user("null_success", tier="monthly", remaining=596_500, used=3_500, cost="0.09")
    grant(u, 600_000, at(1))
    row(u, 2_500, cost_estimate=5, success=None, created_at=at(2))
    row(u, 1_000, cost_estimate=4, created_at=at(3))

    # An undated grant is older than every dated one, so it is the first grant.
    u = user("null_created", tier="lifetime", remaining=15_000, used=1_000, cost="0.01")
    grant(u, 9_000, at(1))
    grant(u, 7_000, None)
    row(u, 1_000, cost_estimate=1, created_at=None)

    u = user("future", tier="monthly", remaining=599_000, used=1_000, cost="0.02")
    grant(u, 600_000, at(1))
    row(u, 1_000, cost_estimate=2, created_at=at(2))
    row(u, 3_000, cost_estimate=10, created_at="2099-01-01 00:00:00+00")

    u = user("near_miss", remaining=33_000, used=2_000, cost="0.04")
    row(u, 40_000, action_type=" Admin_Grant", model_used=None, created_at=at(1))
    row(u, 5_000, action_type="ADMIN_DEDUCT ", model_used=None, created_at=at(2))
    row(u, 2_000, action_type="Chat_Conversation", cost_estimate=4, created_at=at(3))

    u = user("tier_near_miss", tier="monthly", remaining=599_000, used=1_000, cost="0.01")
    row(u, 600_000, action_type=" ADMIN_GRANT", model_used=None, created_at=at(1))
    row(u, 1_000, cost_estimate=1, created_at=at(2))

    # Grants dated before the year 1 and after 9999 are ordered as what they are: the BC one is first.
    u = user("ancient", remaining=10_000, used=0, cost="0")
    grant(u, 6_000, "0001-01-01 00:00:00+00")
    grant(u, 4_000, "0100-01-01 00:00:00+00 BC")

    # An array is no metadata: the 600,000 grant inside it is the product's logged tier grant; the
    # object one is tokens-bot's own approved grant, an extra.
    u = user("odd_metadata", tier="monthly", remaining=1_197_000, used=3_000, cost="0.06")
    grant(u, 600_000, at(1), metadata='[{"source": "slack", "request_id": 1}]')
    grant(u, 600_000, at(2), metadata='{"source": "slack", "request_id": 9}')
    row(u, 1_000, cost_estimate=2, created_at=at(3), metadata='"scalar"')
    row(u, 1_000, cost_estimate=2, created_at=at(4), metadata="42")
    row(u, 1_000, cost_estimate=2, created_at=at(5), metadata="{invalid")

    u = user("null_profile", remaining=None, used=None, cost=None)
    grant(u, 10_000, at(1))
    row(u, 2_000, cost_estimate=4, created_at=at(2))

    # Every balance NULL and a known tier: a correction must write all three columns.
    u = user("unset_profile", tier="monthly", remaining=None, used=None, cost=None)
    grant(u, 600_000, at(1))
    row(u, 1_000, cost_estimate=25, created_at=at(2))

    u = user("negative", remaining=-2_500, used=3_500, cost="0.07")
    grant(u, 1_000, at(1))
    row(u, 3_500, cost_estimate=7, created_at=at(2))

    # Times Python cannot hold: counted like any row, shown as unknown; twins of them are still compared.
    u = user("infinite_time", remaining=9_000_000, used=2_000, cost="0.05")  # the largest drift
    grant(u, 30_000, at(1))
    row(u, 1_000, cost_estimate=2, created_at=at(2))
    row(u, 1_000, cost_estimate=2, created_at="infinity")
    row(u, 500, cost_estimate=1, created_at="10000-01-01 00:00:00+00")

    u = user("orphan", profile=False)
    row(u, 700, cost_estimate=1, created_at=at(2))

    user("no_ledger", remaining=6_000, used=4_000, cost="0.10")

    u = user("case_email", email="Mixed.Case@Variant.Example", tier="monthly", remaining=599_900, used=100)
    grant(u, 600_000, at(1))
    row(u, 100, cost_estimate=None, created_at=at(2))

    if v.text_user_ids:
        u = user("legacy", id="legacy-7", remaining=19_000, used=500, cost="0.01")
        grant(u, 20_000, at(1))
        row(u, 500, cost_estimate=1, created_at=at(2))
    if v.tokens_type == "numeric":
        # Sums beyond bigint, and fractions of a token rounded per row.
        big = 10**19
        u = user("huge", remaining=big if v.balance_type == "numeric" else 9 * 10**18, used=big // 2)
        grant(u, 2 * big, at(1))
        row(u, big // 2, created_at=at(2))
        row(u, big // 2, created_at=at(3))
        row(u, "1000.5", created_at=at(4))
    rows.append({"user_id": None, "tokens_used": 999, "created_at": at(3)})
    return users, rows


def ordinary_users(seed: int = 7, count: int = 20) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Users like most: a tier or a first grant, some usage, a profile that mostly agrees."""
    rng = random.Random(seed)
    users, rows = [], []
    for n in range(count):
        key = f"ord{n:02d}"
        uid = user_id(key)
        tier = rng.choice(["monthly", "annual", None, None])
        grant = {"monthly": 600_000, "annual": 5_000_000, None: rng.choice([8_000, 25_000, 120_000])}[tier]
        rows.append({"user_id": uid, "tokens_used": grant, "action_type": GRANT, "created_at": at(1, n)})
        used = 0
        cents = 0
        for k in range(rng.randint(1, 5)):
            tokens = rng.randint(100, 3_000)
            cost = rng.randint(1, 40)
            ok = rng.random() > 0.15
            rows.append(
                {
                    "user_id": uid,
                    "tokens_used": tokens,
                    "cost_estimate": cost,
                    "success": ok,
                    "model_used": rng.choice(["gpt-4o", "gpt-5-mini", None]),
                    "created_at": at(2 + k, n * 60),
                }
            )
            used += tokens if ok else 0
            cents += cost if ok else 0
        drift = rng.choice([0, 0, 0, 150, -2_000])
        users.append(
            {
                "key": key,
                "id": uid,
                "email": email(key),
                "tier": tier,
                "remaining": grant - used - drift,
                "used": used + drift,
                "cost": f"{cents / 100:.2f}",
            }
        )
    return users, rows


def load_dataset(conn: Connection, v: Variant) -> None:
    named, named_rows = named_users(v)
    ordinary, ordinary_rows = ordinary_users()
    for user in named + ordinary:
        insert_user(conn, v, user)
    insert_rows(conn, v, named_rows + ordinary_rows)
