"""The replica's 30 users: 26 who reconcile under the product's configuration, 4 with a real cause of drift.

Each story is one the research notes document (facts §4, §6, §7). Every number a test expects comes
from here: `UserBuilder` keeps the ledger-implied balance row by row; a clean user's current profile row
holds exactly it, a planted user's holds it moved by the cause's amount. Several users have 2-3 profile
rows (an older inactive version, a draft copying balances): only the current row is right (cause 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tests.support.replica_ledger import ProfileRow, State, UserBuilder, day

ANNUAL, MONTHLY, FREE = "vision_pro_annual", "vision_pro_28day", "free"
SUB = {"plan": ANNUAL, "grant_type": "full_year_upfront"}
TRIAL = {"grant_type": "trial"}
ADMIN = {"admin_action": True, "reason": "Admin token adjustment"}


def pack(n: int, tokens: int) -> dict[str, object]:
    """A token pack as the Stripe webhook logged it (admin_grant, model 'stripe') until 2025-11-06."""
    return {
        "stripe_payment_intent": f"pi_replica_{n:04d}",
        "stripe_session_id": f"cs_replica_{n:04d}",
        "token_pack_id": f"pack_{tokens // 1000}k",
        "pack_id": f"pack_{tokens // 1000}k",
        "purchase_amount": tokens,
        "purchase_currency": "usd",
        "amount_paid": 1900 if tokens <= 100_000 else 4900,
    }


@dataclass(frozen=True)
class ReplicaUser:
    key: str
    user_id: str
    email: str
    rows: list[dict[str, object]]
    profiles: list[ProfileRow]
    current: ProfileRow
    ledger: State
    """What the ledger says: expected remaining, lifetime used and cost (in cost_estimate's unit)."""
    finding: tuple[str, int] | None
    verdict: str

    @property
    def profile(self) -> State:
        return self.current.state

    @property
    def used_discrepancy(self) -> int:
        return self.profile.used - self.ledger.used

    @property
    def remaining_discrepancy(self) -> int:
        return self.profile.remaining - self.ledger.remaining

    @property
    def cost_discrepancy(self) -> Decimal:
        return self.profile.cost - self.ledger.cost

    @property
    def versioned(self) -> bool:
        return len(self.profiles) > 1


def _done(
    b: UserBuilder, *, finding: tuple[str, int] | None = None, verdict: str = "reconciled"
) -> ReplicaUser:
    current = b.current()
    assert current.tier == b.tier, b.key
    return ReplicaUser(b.key, b.user_id, b.email, b.rows, b.profiles, current, b.state(), finding, verdict)


def _single(b: UserBuilder, created: datetime, state: State | None = None) -> None:
    """The one, active profile row; its balances are the ledger's unless a cause moved them."""
    b.profile(state or b.state(), active=True, created=created, updated=b.last or created)


def clean_users() -> list[UserBuilder]:
    users = []

    b = UserBuilder("annual_trial_then_sub", ANNUAL)  # trial tokens are discarded by the annual SET
    b.grant("trial_grant", "trial", 100_000, day(10, 17, 10), **TRIAL)
    b.usage(38_000, day(10, 17, 11), day(10, 24), 9, failed=1)
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 24, 15), **SUB)
    b.usage(214_530, day(10, 25), day(11, 9), 20, failed=2)
    _single(b, day(10, 17, 9, 30))
    users.append(b)

    b = UserBuilder("annual_pack_versions", ANNUAL)
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 18, 8), **SUB)
    b.usage(120_000, day(10, 18, 9), day(10, 28), 12)
    old = b.state()
    b.grant("admin_grant", "stripe", 250_000, day(10, 29, 12), **pack(1, 250_000))
    copied = b.state()
    b.usage(61_250, day(10, 29, 13), day(11, 8), 10, failed=1)
    b.profile(old, version=1, created=day(10, 18, 7), updated=day(10, 28, 1))
    b.profile(b.state(), version=2, active=True, created=day(10, 28, 2), updated=day(11, 8, 3), parent=1)
    b.profile(copied, version=3, draft=True, created=day(10, 29, 14), updated=day(11, 10, 8), parent=2)
    users.append(b)

    b = UserBuilder("annual_deduct", ANNUAL)
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 20, 8), **SUB)
    b.usage(80_000, day(10, 20, 9), day(10, 27), 8)
    b.grant("admin_grant", "admin", 50_000, day(10, 27, 10), delta=50_000, **ADMIN)
    b.usage(42_000, day(10, 27, 11), day(11, 3), 5)
    b.grant("admin_deduct", "admin", 20_000, day(11, 3, 10), delta=-20_000, **ADMIN)
    b.usage(15_000, day(11, 3, 11), day(11, 9), 3)
    _single(b, day(10, 20, 7))
    users.append(b)

    b = UserBuilder("annual_no_tier_id")  # no code ever wrote user_profiles.membership_tier_id
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 21, 8), **SUB)
    b.usage(301_234, day(10, 21, 9), day(11, 9), 25, failed=2)
    _single(b, day(10, 21, 7))
    users.append(b)

    b = UserBuilder("annual_two_resets", ANNUAL)  # the latest successful SET governs
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 16, 8), **SUB)
    b.usage(97_000, day(10, 16, 9), day(10, 26), 8)
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 26, 8), **SUB)
    b.usage(55_555, day(10, 26, 9), day(11, 1), 6)
    b.add("subscription_grant", "subscription", 5_000_000, day(11, 1, 8), success=False,
          error="checkout session already fulfilled", metadata=SUB)  # fmt: skip
    b.usage(12_000, day(11, 1, 9), day(11, 6), 3)
    _single(b, day(10, 16, 7))
    users.append(b)

    b = UserBuilder("annual_untracked_set", ANNUAL)  # hormozi §11 SET 5,000,000 with no ledger row
    b.usage(180_000, day(10, 19), day(11, 7), 15)
    _single(b, day(10, 12))
    users.append(b)

    b = UserBuilder("annual_old_plan_versions", ANNUAL)
    b.usage(30_000, day(10, 17), day(10, 22), 4)
    moved = State(375_000 - b.used, b.used, b.cost)  # the 28-day plan's balance before the upgrade
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 23, 8), **SUB)
    b.usage(40_000, day(10, 23, 9), day(10, 30), 4)
    copied = b.state()
    b.usage(48_888, day(10, 30, 9), day(11, 9), 4)
    b.profile(moved, version=1, tier=MONTHLY, created=day(10, 10), updated=day(10, 22, 12))
    b.profile(b.state(), version=2, active=True, created=day(10, 23, 7), updated=day(11, 9, 1), parent=1)
    b.profile(copied, version=3, draft=True, created=day(10, 30, 8), updated=day(11, 9, 2), parent=2)
    users.append(b)

    b = UserBuilder("monthly_first_cycle", MONTHLY)  # drip_tokens_28day SETs 375,000 and logs nothing
    b.usage(143_210, day(10, 20), day(11, 9), 14, failed=1)
    _single(b, day(10, 20, 7))
    users.append(b)

    b = UserBuilder("monthly_pack_versions", MONTHLY)
    b.usage(60_000, day(10, 22), day(10, 30), 6)
    old = b.state()
    b.grant("admin_grant", "stripe", 100_000, day(10, 31, 12), **pack(2, 100_000))
    copied = b.state()
    b.usage(77_000, day(10, 31, 13), day(11, 9), 7)
    b.profile(State(0, old.used, old.cost), version=1, tier="", created=day(10, 5), updated=day(10, 21))
    b.profile(b.state(), version=2, active=True, created=day(10, 21, 1), updated=day(11, 9, 1), parent=1)
    b.profile(copied, version=3, draft=True, created=day(10, 31, 14), updated=day(11, 9, 5), parent=2)
    users.append(b)

    b = UserBuilder("monthly_low_versions", MONTHLY)  # current row low, older rows high
    b.usage(130_000, day(10, 18), day(10, 24), 6)
    copied = b.state()
    b.usage(120_000, day(10, 24, 12), day(10, 29), 5)
    old = b.state()
    b.usage(120_000, day(10, 30), day(11, 9), 9)
    b.profile(old, version=1, created=day(10, 17), updated=day(10, 29, 12))
    b.profile(b.state(), version=2, active=True, created=day(10, 29, 13), updated=day(11, 9, 1), parent=1)
    b.profile(copied, version=3, draft=True, created=day(10, 24, 11), updated=day(11, 10), parent=2)
    users.append(b)

    b = UserBuilder("trial_low")
    b.grant("trial_grant", "trial", 100_000, day(10, 25, 8), **TRIAL)
    b.usage(95_500, day(10, 25, 9), day(11, 9), 9, failed=1)
    _single(b, day(10, 25, 7))
    users.append(b)

    b = UserBuilder("trial_free", FREE)
    b.grant("trial_grant", "trial", 100_000, day(10, 28, 8), **TRIAL)
    b.usage(31_337, day(10, 28, 9), day(11, 8), 5)
    _single(b, day(10, 28, 7))
    users.append(b)

    b = UserBuilder("spent_out")
    b.grant("trial_grant", "trial", 100_000, day(10, 19, 8), **TRIAL)
    b.usage(100_000, day(10, 19, 9), day(11, 4), 10)
    _single(b, day(10, 19, 7))
    users.append(b)

    b = UserBuilder("pack_free", FREE)
    b.grant("admin_grant", "stripe", 500_000, day(10, 24, 8), **pack(3, 500_000))
    b.usage(123_456, day(10, 24, 9), day(11, 9), 11)
    _single(b, day(10, 23))
    users.append(b)

    b = UserBuilder("admin_grant_deduct")
    b.grant("admin_grant", "admin", 1_000_000, day(10, 17, 8), delta=1_000_000, **ADMIN)
    b.usage(200_000, day(10, 17, 9), day(10, 30), 12)
    b.grant("admin_deduct", "admin", 50_000, day(10, 30, 10), delta=-50_000, **ADMIN)
    b.usage(10_000, day(10, 30, 11), day(11, 5), 3)
    _single(b, day(10, 16))
    users.append(b)

    b = UserBuilder("admin_two_grants")
    b.grant("admin_grant", "admin", 200_000, day(10, 18, 8), delta=200_000, **ADMIN)
    b.grant("trial_grant", "trial", 100_000, day(10, 19, 8), **TRIAL)
    b.usage(150_000, day(10, 19, 9), day(11, 1), 10)
    b.grant("admin_grant", "admin", 150_000, day(11, 1, 10), delta=150_000, **ADMIN)
    b.usage(99_999, day(11, 1, 11), day(11, 9), 8)
    _single(b, day(10, 18))
    users.append(b)

    for key, tier in (("fresh_free", FREE), ("fresh_none", None)):  # signed up after the 100 was removed
        b = UserBuilder(key, tier)
        b.profile(State(0, 0, Decimal(0)), active=True, created=day(11, 8), updated=day(11, 8))
        users.append(b)

    b = UserBuilder("versions_no_active")  # no active row: the latest updated non-draft one is current
    b.grant("trial_grant", "trial", 100_000, day(10, 20, 8), **TRIAL)
    b.usage(20_000, day(10, 20, 9), day(10, 23), 3)
    old = b.state()
    b.grant("admin_grant", "stripe", 200_000, day(10, 25, 8), **pack(4, 200_000))
    b.usage(45_000, day(10, 25, 9), day(11, 6), 5)
    b.profile(old, version=1, created=day(10, 20), updated=day(10, 23, 12))
    b.profile(b.state(), version=2, created=day(10, 23, 13), updated=day(11, 6, 12), parent=1)
    b.profile(old, version=3, draft=True, created=day(11, 7), updated=day(11, 9, 12), parent=2)
    users.append(b)

    b = UserBuilder("versions_stale_low", MONTHLY)  # older rows low, current row high
    b.usage(373_000, day(10, 17), day(10, 27), 12)
    old = b.state()
    b.grant("admin_grant", "stripe", 300_000, day(10, 28, 8), **pack(5, 300_000))
    b.usage(12_345, day(10, 28, 9), day(11, 5), 3)
    b.profile(old, version=1, created=day(10, 16), updated=day(10, 27, 12))
    b.profile(b.state(), version=2, active=True, created=day(10, 27, 13), updated=day(11, 5, 1), parent=1)
    b.profile(old, version=3, draft=True, created=day(10, 27, 14), updated=day(11, 9), parent=2)
    users.append(b)

    b = UserBuilder("tier_in_draft_only")  # the draft's and the old row's tiers must not count
    b.grant("trial_grant", "trial", 100_000, day(10, 22, 8), **TRIAL)
    b.usage(64_000, day(10, 22, 9), day(11, 4), 6)
    b.profile(
        State(5_000_000, 0, Decimal(0)), version=1, tier=ANNUAL, created=day(10, 21), updated=day(10, 22)
    )
    b.profile(b.state(), version=2, active=True, created=day(10, 22, 7), updated=day(11, 4, 1), parent=1)
    b.profile(
        b.state(), version=3, draft=True, tier=MONTHLY, created=day(11, 5), updated=day(11, 9), parent=2
    )
    users.append(b)

    b = UserBuilder("failed_heavy", FREE)  # failed operations carry tokens but were never charged
    b.grant("admin_grant", "stripe", 250_000, day(10, 21, 8), **pack(6, 250_000))
    b.usage(70_000, day(10, 21, 9), day(11, 8), 8, failed=6)
    _single(b, day(10, 21, 7))
    users.append(b)

    b = UserBuilder("annual_heavy", ANNUAL)
    b.grant("subscription_grant", "subscription", 5_000_000, day(10, 16, 8), **SUB)
    b.usage(612_345, day(10, 16, 9), day(11, 10), 30, failed=3)
    _single(b, day(10, 16, 7))
    users.append(b)

    b = UserBuilder("monthly_trial_mix", MONTHLY)  # grant_trial_tokens ADDs on top of the drip
    b.grant("trial_grant", "trial", 100_000, day(10, 24, 8), **TRIAL)
    b.usage(200_000, day(10, 24, 9), day(11, 9), 12)
    _single(b, day(10, 24, 7))
    users.append(b)

    b = UserBuilder("pack_twice")  # the same pack bought twice, ten days apart: two real grants
    b.grant("admin_grant", "stripe", 100_000, day(10, 20, 8), **pack(7, 100_000))
    b.usage(90_000, day(10, 20, 9), day(10, 30), 6)
    b.grant("admin_grant", "stripe", 100_000, day(10, 30, 8), **pack(8, 100_000))
    b.usage(60_000, day(10, 30, 9), day(11, 8), 5)
    _single(b, day(10, 20, 7))
    users.append(b)

    b = UserBuilder("migrated_grants")  # unify_token_tracking step 4: model COALESCE(source, 'unknown')
    moved = {"migrated_from": "token_transactions"}
    b.grant("trial_grant", "unknown", 100_000, day(10, 18, 8), **moved)
    b.grant("token_pack_purchase", "unknown", 250_000, day(10, 26, 8), **moved)
    b.usage(111_111, day(10, 26, 9), day(11, 9), 9)
    _single(b, day(10, 18, 7))
    users.append(b)
    return users


USAGE_NEVER_SUBTRACTED = 432_778  # the operator's own account (facts §7)
BACKFILL = 283_615


def planted_users() -> list[ReplicaUser]:
    users = []
    # 1. trackTokenUsage logged usage but never moved the balance (FIX_BALANCE_TO_MATCH_TRANSACTIONS).
    b = UserBuilder("ops_owner")
    b.grant("admin_grant", "admin", 100_000, day(10, 17, 8), delta=100_000, **ADMIN)
    b.usage(201_000, day(10, 17, 9), day(11, 1), 14, failed=2)
    b.grant("admin_grant", "admin", 500_000, day(11, 1, 10), delta=500_000, **ADMIN)
    b.usage(USAGE_NEVER_SUBTRACTED - 201_000, day(11, 1, 11), day(11, 9), 12)
    uncharged = State(600_000, 0, Decimal(0))
    b.profile(State(100_100, 0, Decimal(0)), version=1, created=day(10, 5), updated=day(10, 17, 8))
    b.profile(uncharged, version=2, active=True, created=day(10, 17, 9), updated=day(11, 1, 10), parent=1)
    b.profile(uncharged, version=3, draft=True, created=day(11, 2), updated=day(11, 9, 18), parent=2)
    users.append(_done(b, finding=("usage_not_charged", USAGE_NEVER_SUBTRACTED), verdict="problem"))

    # 2. The column DEFAULT 100 gave tokens no ledger row records (REMOVE_DEFAULT_100_TOKENS).
    b = UserBuilder("default_hundred", FREE)
    b.grant("trial_grant", "trial", 100_000, day(10, 26, 8), **TRIAL)
    b.usage(41_234, day(10, 26, 9), day(11, 8), 6)
    _single(b, day(10, 26, 7), State(b.remaining + 100, b.used, b.cost))
    users.append(_done(b, finding=("unlogged_grant", 100), verdict="minor"))

    # 3. A 100,000 admin grant given before token_usage existed (CLEANUP_AND_FIX_TOKEN_BALANCE).
    b = UserBuilder("before_tracking")
    b.grant("admin_grant", "admin", 500_000, day(10, 20, 8), delta=500_000, **ADMIN)
    b.usage(187_650, day(10, 20, 9), day(11, 9), 15)
    _single(b, day(10, 5), State(b.remaining + 100_000, b.used, b.cost))
    users.append(_done(b, finding=("unlogged_grant", 100_000), verdict="problem"))

    # 4. COMPLETE_TOKEN_TRACKING_FIX's backfill ran twice: twin rows the profile counted once.
    b = UserBuilder("backfill_twice")
    for _ in range(2):
        b.add(
            "admin_grant",
            "system",
            BACKFILL,
            day(10, 8, 9, 14, 27),
            metadata={"source": "historical_backfill"},
        )
    b.usage(96_000, day(10, 18), day(11, 5), 8)
    _single(b, day(10, 8, 9, 14, 27), State(b.remaining - BACKFILL, b.used, b.cost))
    users.append(_done(b, finding=("duplicate_grant", BACKFILL), verdict="problem"))
    return users


def replica_users() -> list[ReplicaUser]:
    return [_done(b) for b in clean_users()] + planted_users()
