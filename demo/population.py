"""The demo population: clean users in the shapes real users take, and one showcase user per finding."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from demo.builder import Builder
from demo.catalog import (
    ANNUAL,
    CLEAN_USERS,
    DEMO_DOMAIN,
    FIRST_NAMES,
    HEAVY_OPERATIONS,
    LAST_NAMES,
    MONTHLY,
    OLD_PRICES,
    PRICES,
    REFERENCE_TIME,
    dollars,
    price_cents,
)
from demo.rows import Row, Spec, User


class Population(Builder):
    """The clean users and the showcase users, each drawn in a fixed order."""

    def clean_user(self, index: int) -> User:
        """A user whose profile matches the ledger exactly, in one of the shapes real users take."""
        rng = self.rng
        email = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}.{index:03d}@{DEMO_DOMAIN}"
        low = index % 14 == 3  # about fifteen users near the end of a trial: the daily triage list
        roll = rng.random()
        tier = None if low or roll >= 0.8 else "annual" if roll < 0.3 else "monthly"
        days = rng.randint(5, 300)
        signup = REFERENCE_TIME - timedelta(days=days, seconds=rng.randint(0, 86_399))
        user = self.user(email, tier, signup)
        first_grant = signup + timedelta(minutes=1)
        if tier == "annual":
            if rng.random() < 0.25:
                user.unlogged_initial = ANNUAL
            else:
                self.grant(user, ANNUAL, first_grant, "annual membership")
        elif tier == "monthly":
            cycles = 1 + days // 30
            # Tier-only only for a first cycle: a logged renewal of the same amount would otherwise be
            # taken for the initial grant (see the core's first-admin_grant rule).
            if cycles == 1 and rng.random() < 0.4:
                user.unlogged_initial = MONTHLY
            else:
                for cycle in range(cycles):
                    at = first_grant + timedelta(days=30 * cycle)
                    self.grant(user, MONTHLY, at, f"monthly membership, cycle {cycle + 1}")
        else:
            trial = 100_000 if low or rng.random() < 0.6 else 250_000
            self.grant(user, trial, first_grant, "welcome trial")
        if not low and rng.random() < 0.1:
            at = signup + timedelta(days=rng.randint(1, days), minutes=rng.randint(0, 600))
            self.grant(user, rng.choice((25_000, 50_000)), at, "goodwill: outage credit", "ops:priya")
        if not low and rng.random() < 0.05:
            at = signup + timedelta(days=rng.randint(1, days), minutes=rng.randint(0, 600))
            self.admin(user, "admin_deduct", 10_000, at, "reversal of a promotional credit", "ops:jonas")
        available = user.ledger_remaining()
        if low:
            specs = self.specs(None, available - rng.randint(200, 9_000))
        else:
            roll = rng.random()
            if roll < 0.05:
                count = 0  # signed up, never used it
            elif roll < 0.35:
                count = rng.randint(3, 20)
            elif roll < 0.85:
                count = rng.randint(20, 80)
            else:
                count = rng.randint(80, 200)
            # A margin keeps everyone else above the low-balance threshold, so that list is exactly the above.
            specs = self.specs(count, available - 20_000)
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def heavy(self) -> User:
        """A power user with thousands of rows: paging, breakdowns and query speed on a large ledger."""
        signup = REFERENCE_TIME - timedelta(days=290, hours=5)
        user = self.user(f"heavy@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        specs = [self.draw(failure_rate=0.02) for _ in range(HEAVY_OPERATIONS)]
        used = sum(s.tokens for s in specs if s.success)
        top_ups = max(0, -(-(used + 250_000 - ANNUAL) // 2_000_000))
        for k in range(top_ups):
            at = signup + timedelta(days=290 * (k + 1) // (top_ups + 1), hours=3)
            self.grant(user, 2_000_000, at, "enterprise top-up", "ops:priya")
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def reconciled(self) -> User:
        """Perfectly clean, with more than 50 rows (a few failed, not charged) so paging shows."""
        signup = REFERENCE_TIME - timedelta(days=120, hours=2)
        user = self.user(f"reconciled@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        specs = [self.draw(failure_rate=0) for _ in range(80)]
        for index in (17, 44, 71):
            specs[index] = Spec(specs[index].action, specs[index].model, specs[index].input_tokens, 0, False)
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def failed_charged(self) -> User:
        """The profile was charged for failed operations: used is high by exactly their tokens."""
        signup = REFERENCE_TIME - timedelta(days=75, hours=7)
        user = self.user(f"failed-charged@{DEMO_DOMAIN}", "monthly", signup)
        for cycle in range(3):
            at = signup + timedelta(days=30 * cycle, minutes=1)
            self.grant(user, MONTHLY, at, f"monthly membership, cycle {cycle + 1}")
        specs = [self.draw(failure_rate=0) for _ in range(36)]
        failing = {
            5: "vision_generation",
            12: "blueprint_generation",
            23: "chat_conversation",
            30: "life_vision_master_assembly",
        }
        for index, action in failing.items():
            drawn = self.draw(action, failure_rate=0)
            specs[index] = Spec(action, drawn.model, drawn.input_tokens, 0, success=False)
        self.usage(user, specs, signup + timedelta(minutes=5))
        failed = [r for r in user.rows if not r.success]
        failed_tokens = sum(r.tokens_used for r in failed)
        user.used = user.ledger_used() + failed_tokens
        user.remaining = user.ledger_remaining() - failed_tokens
        user.cost = dollars(
            user.ledger_cents() + sum((r.cost_estimate or Decimal(0) for r in failed), Decimal(0))
        )
        return user

    def duplicates(self) -> User:
        """The ledger holds two entries twice (charged once): one 2 s apart, one by a repeated request id."""
        signup = REFERENCE_TIME - timedelta(days=200, hours=1)
        user = self.user(f"duplicates@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        specs = [self.draw(failure_rate=0) for _ in range(40)]
        specs[10] = self.draw("chat_conversation", failure_rate=0)
        specs[25] = self.draw("blueprint_generation", failure_rate=0)
        self.usage(user, specs, signup + timedelta(minutes=5))
        charged_once = user.ledger_used(), user.ledger_remaining(), dollars(user.ledger_cents())
        # A client double-submit logged by an old code path without request ids, 2 s after the first.
        chat = user.rows[11]
        chat.metadata = {"client": "ios"}
        self._copy(user, chat, seconds=2)
        # A logging retry after a timeout: the same request logged again three minutes later.
        self._copy(user, user.rows[26], seconds=180)
        user.used, user.remaining, user.cost = charged_once
        return user

    def _copy(self, user: User, row: Row, *, seconds: int) -> Row:
        copy = replace(
            row,
            id=user.new_id(),
            metadata=dict(row.metadata),
            created_at=row.created_at + timedelta(seconds=seconds),
        )
        user.rows.append(copy)
        return copy

    def unlogged_grant(self) -> User:
        """A third monthly cycle reached the balance but never the ledger: remaining is 600,000 high."""
        signup = REFERENCE_TIME - timedelta(days=80, hours=3)
        user = self.user(f"unlogged-grant@{DEMO_DOMAIN}", "monthly", signup)
        for cycle in range(2):
            at = signup + timedelta(days=30 * cycle, minutes=1)
            self.grant(user, MONTHLY, at, f"monthly membership, cycle {cycle + 1}")
        self.usage(user, self.specs(45, 2 * MONTHLY - 50_000), signup + timedelta(minutes=5))
        user.remaining = user.ledger_remaining() + MONTHLY
        return user

    def before_tracking(self) -> User:
        """An early user: the profile has used tokens, but token tracking began after their usage."""
        signup = REFERENCE_TIME - timedelta(days=330, hours=4)
        user = self.user(f"before-tracking@{DEMO_DOMAIN}", "annual", signup)
        user.used = 842_117
        user.remaining = ANNUAL - user.used
        user.cost = Decimal("61.38")
        return user

    def cost_drift(self) -> User:
        """Eight gpt-4o operations were charged at the old gpt-4o price; the profile total was since
        recomputed at today's prices, so the cached cost no longer matches the ledger's."""
        signup = REFERENCE_TIME - timedelta(days=150, hours=6)
        user = self.user(f"cost-drift@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        # Every one of these actions runs on gpt-4o among other models; here all eight did.
        actions = ("vision_generation", "blueprint_generation", "vision_refinement", "chat_conversation") * 2
        early = [self.draw(action, failure_rate=0) for action in actions]
        early = [Spec(s.action, "gpt-4o", s.input_tokens, s.output_tokens) for s in early]
        price_change = signup + timedelta(days=40)
        for spec, at in zip(
            early, self.schedule(8, signup + timedelta(minutes=5), price_change), strict=True
        ):
            self.operation(user, spec, at, prices=OLD_PRICES)
        self.usage(user, [self.draw(failure_rate=0) for _ in range(30)], price_change)
        # Every charged row here has a model and token counts, so today's price applies to each.
        today = [
            price_cents(str(r.model_used), int(r.input_tokens or 0), int(r.output_tokens or 0), PRICES)
            for r in user.rows
            if r.charged
        ]
        user.cost = dollars(sum(today, Decimal(0)))
        return user

    def negative(self) -> User:
        """A trial user the product let overspend: the ledger agrees, but the balance is below zero."""
        signup = REFERENCE_TIME - timedelta(days=45, hours=8)
        user = self.user(f"negative@{DEMO_DOMAIN}", None, signup)
        self.grant(user, 100_000, signup + timedelta(minutes=1), "welcome trial")
        specs = self.specs(None, 100_000 - 1_000)
        # Two large requests racing the balance check carried the user past zero.
        specs.append(Spec("blueprint_generation", "gpt-4", 4_210, 5_030))
        specs.append(Spec("life_vision_master_assembly", "gpt-4", 6_480, 2_790))
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def messy(self) -> User:
        """Consistent once read as README "Your product's schema" says: a row with no success value, one
        with no cost, one dated by a device with a wrong clock, and a hand-typed ` Admin_Grant`."""
        signup = REFERENCE_TIME - timedelta(days=60, hours=5)
        user = self.user(f"messy@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        self.usage(user, [self.draw(failure_rate=0) for _ in range(20)], signup + timedelta(minutes=5))
        self.admin(
            user, " Admin_Grant", 50_000, signup + timedelta(days=30), "goodwill, typed by hand", "ops:ben"
        )
        odd = self.usage(user, [self.draw(failure_rate=0) for _ in range(3)], signup + timedelta(days=31))
        odd[0].success = None
        odd[1].cost_estimate = None
        odd[2].created_at = datetime(2096, 1, 1, 12, tzinfo=UTC)
        return user

    def not_set(self) -> User:
        """A sign-up whose profile row exists with every balance column NULL, and no ledger rows yet."""
        user = self.user(f"not-set@{DEMO_DOMAIN}", None, REFERENCE_TIME - timedelta(days=2))
        user.unset = True
        return user


def build() -> tuple[list[User], dict[str, User]]:
    """Every demo user, and the showcase users by the label a demo walks through."""
    builder = Population()
    for index in range(CLEAN_USERS):
        builder.clean_user(index)
    showcase = {
        "failed_charged": builder.failed_charged(),
        "duplicates": builder.duplicates(),
        "unlogged_grant": builder.unlogged_grant(),
        "usage_before_tracking": builder.before_tracking(),
        "cost_drift": builder.cost_drift(),
        "negative_balance": builder.negative(),
        "reconciled": builder.reconciled(),
        "messy": builder.messy(),
        "not_set": builder.not_set(),
        "heavy": builder.heavy(),
    }
    return builder.users, showcase
