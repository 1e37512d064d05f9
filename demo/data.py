"""Demo data: the product's tables and a deterministic data set in which every finding occurs.

The data set is a small, believable product: about two hundred users whose profiles agree exactly with
their ledgers (a few of them nearly out of tokens), one heavy user with thousands of operations, and one
showcase user per finding with a memorable email at demo.example, so a demo or a test can run
`/tokens check failed-charged@demo.example` and see that finding with its exact tokens.

Everything derives from a fixed seed, a fixed reference date and uuid5 ids: every load produces the same
rows, so screenshots, docs and tests agree, and a forced reload replaces exactly the earlier demo rows.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, text

from core.domain.errors import ProductDataExistsError
from core.settings import ModelPrice, Settings

DEMO_DOMAIN = "demo.example"
# "Now" for the demo: a fixed instant, so the data (and every timestamp in it) is the same on every load.
REFERENCE_TIME = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
# uuid5 namespace of every demo id; any fixed UUID works, it only has to never change.
DEMO_NAMESPACE = uuid.UUID("0b7e4c52-9d3a-5f61-8a2e-3c4d5e6f7a81")
CLEAN_USERS = 200
HEAVY_OPERATIONS = 3_000
_SEED = 20_250_203

# The class defaults, not the environment: the demo must not change with a deployment's overrides.
_PRICES: dict[str, ModelPrice] = Settings.model_fields["tokens_model_prices"].default
_TIER_GRANTS: dict[str, int] = Settings.model_fields["tokens_tier_grants"].default
ANNUAL = _TIER_GRANTS["annual"]
MONTHLY = _TIER_GRANTS["monthly"]
# gpt-4o's launch price, which the product charged before today's table: the cost-drift showcase's rows.
OLD_PRICES: dict[str, ModelPrice] = {
    **_PRICES,
    "gpt-4o": ModelPrice(input=Decimal("0.5"), output=Decimal("1.5")),
}
_CENT = Decimal("0.01")
_PRICE_SCALE = Decimal("0.0001")


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded: counts for the log line, and the showcase users a demo walks through."""

    users: int
    ledger_rows: int
    # label (a FindingKind value, "reconciled" or "heavy") -> (user_id, email)
    showcase: Mapping[str, tuple[uuid.UUID, str]]


@dataclass(frozen=True)
class _Action:
    """How often an action happens, on which models, and its typical token counts."""

    weight: int
    models: tuple[str, ...]
    input: tuple[int, int]
    output: tuple[int, int]


# The guide's eleven consumption action types with plausible models and sizes.
_ACTIONS: dict[str, _Action] = {
    "chat_conversation": _Action(30, ("gpt-4o", "gpt-5-mini"), (200, 3_000), (80, 1_200)),
    "prompt_suggestions": _Action(12, ("gpt-5-mini",), (150, 500), (60, 250)),
    "assessment_scoring": _Action(8, ("gpt-4", "gpt-5-mini"), (800, 2_500), (150, 600)),
    "vision_refinement": _Action(8, ("gpt-4o", "gpt-5-mini"), (1_000, 3_000), (400, 1_500)),
    "frequency_flip": _Action(8, ("gpt-4o", "gpt-5-mini"), (200, 800), (150, 600)),
    "life_vision_category_summary": _Action(7, ("gpt-5-mini", "gpt-4o"), (600, 2_000), (200, 700)),
    # Speech: tts-1 is priced per input character, whisper-1 per input audio token; no output tokens.
    "audio_generation": _Action(6, ("tts-1", "whisper-1"), (300, 5_000), (0, 0)),
    "vision_generation": _Action(5, ("gpt-4", "gpt-4o"), (1_500, 4_000), (1_200, 3_500)),
    # One or two images, 1,000 output tokens each (dall-e-3 charges per image, 4 cents).
    "image_generation": _Action(5, ("dall-e-3",), (40, 400), (1, 2)),
    "blueprint_generation": _Action(3, ("gpt-4", "gpt-4o"), (2_000, 5_000), (2_000, 6_000)),
    "life_vision_master_assembly": _Action(2, ("gpt-4",), (4_000, 9_000), (1_500, 4_000)),
}
_ACTION_NAMES = tuple(_ACTIONS)
_ACTION_WEIGHTS = tuple(a.weight for a in _ACTIONS.values())

_ERRORS = (
    "OpenAI API error 429: rate limit exceeded",
    "Request timed out after 60 s",
    "OpenAI API error 503: the engine is currently overloaded",
    "Content policy violation: the prompt was rejected",
    "Stream interrupted: client disconnected",
)
_CLIENTS = ("web", "web", "ios", "android")
_FIRST_NAMES = (
    "ava", "ben", "chloe", "dev", "elena", "felix", "grace", "hiro", "isla", "jonas", "kira", "liam",
    "maya", "noah", "olga", "priya", "quinn", "rafael", "sofia", "tariq", "uma", "victor", "wen", "ximena",
    "yusuf", "zoe", "amara", "bruno", "carmen", "dmitri",
)  # fmt: skip
_LAST_NAMES = (
    "nguyen", "patel", "garcia", "kim", "okafor", "schmidt", "rossi", "tanaka", "silva", "cohen",
    "murphy", "novak", "haddad", "larsen", "mendes", "ivanova", "osei", "dubois", "khan", "lindqvist",
)  # fmt: skip


def create_product_tables(conn: Connection) -> None:
    """Create `token_usage`, `user_profiles` and `auth.users` where absent, as the guide describes them."""
    conn.exec_driver_sql(files("demo").joinpath("product_schema.sql").read_text())


def has_product_data(conn: Connection) -> bool:
    """True when the product tables exist and hold any row; demo data must never mix into real data."""
    exists = conn.execute(text("SELECT to_regclass('public.user_profiles') IS NOT NULL")).scalar_one()
    if not exists:
        return False
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM public.user_profiles)")).scalar_one())


def load_demo_data(conn: Connection, *, force: bool = False) -> DemoSummary:
    """Fill the product tables with the demo data set, in the caller's transaction.

    Refused when the tables already hold rows, since demo balances mixed into real ones would be
    indistinguishable; `force` loads anyway, first removing earlier demo rows (their ids are fixed) so
    a reload is idempotent and never touches anyone else's rows.
    """
    create_product_tables(conn)
    if has_product_data(conn) and not force:
        profiles = conn.execute(text("SELECT count(*) FROM public.user_profiles")).scalar_one()
        raise ProductDataExistsError(
            f"The product tables already hold {profiles:,} user profiles, so no demo data was loaded:"
            " demo balances must never mix into real ones. Load demo data into an empty database,"
            " or pass --force only on a database that is itself a demo."
        )
    users, showcase = _build()
    ids = [u.id for u in users]
    conn.execute(text("DELETE FROM public.token_usage WHERE user_id = ANY(:ids)"), {"ids": ids})
    conn.execute(text("DELETE FROM public.user_profiles WHERE user_id = ANY(:ids)"), {"ids": ids})
    conn.execute(text("DELETE FROM auth.users WHERE id = ANY(:ids)"), {"ids": ids})
    rows = _insert(conn, users)
    return DemoSummary(
        users=len(users),
        ledger_rows=rows,
        showcase=MappingProxyType({label: (u.id, u.email) for label, u in showcase.items()}),
    )


# ---------------------------------------------------------------------------------------------------
# Building the data set in memory


def price_cents(
    model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, ModelPrice]
) -> Decimal:
    """Cents for one operation, rounded half away from zero to 4 places exactly as the findings' SQL does."""
    price = prices[model]
    cents = (input_tokens * price.input + output_tokens * price.output) / 1000
    return cents.quantize(_PRICE_SCALE, rounding=ROUND_HALF_UP)


def dollars(cents: Decimal) -> Decimal:
    """Profile cost in dollars: cents / 100 rounded to 2 places, as `round(sum / 100, 2)` in SQL."""
    return (cents / 100).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass
class _Row:
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
class _Spec:
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
class _User:
    id: uuid.UUID
    email: str
    tier: str | None
    signup: datetime
    rows: list[_Row] = field(default_factory=list)
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


class _Builder:
    """Draws every user from one seeded generator; the order of draws is part of the data set."""

    def __init__(self) -> None:
        self.rng = random.Random(_SEED)
        self.users: list[_User] = []

    # -- primitives ----------------------------------------------------------------------------------

    def user(self, email: str, tier: str | None, signup: datetime) -> _User:
        user = _User(id=uuid.uuid5(DEMO_NAMESPACE, f"user/{email}"), email=email, tier=tier, signup=signup)
        self.users.append(user)
        return user

    def admin(self, user: _User, action: str, amount: int, at: datetime, reason: str, by: str) -> _Row:
        row = _Row(
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

    def grant(self, user: _User, amount: int, at: datetime, reason: str, by: str = "billing-webhook") -> _Row:
        return self.admin(user, "admin_grant", amount, at, reason, by)

    def draw(self, action: str | None = None, *, failure_rate: float = 0.03) -> _Spec:
        rng = self.rng
        action = action or rng.choices(_ACTION_NAMES, _ACTION_WEIGHTS)[0]
        shape = _ACTIONS[action]
        model = rng.choice(shape.models)
        input_tokens = rng.randint(*shape.input)
        output_tokens = rng.randint(*shape.output)
        if action == "image_generation":
            output_tokens *= 1_000
        if rng.random() < failure_rate:
            # A failed call is logged with the prompt it sent and nothing back.
            return _Spec(action, model, input_tokens, 0, success=False)
        return _Spec(action, model, input_tokens, output_tokens)

    def operation(
        self,
        user: _User,
        spec: _Spec,
        at: datetime,
        *,
        prices: Mapping[str, ModelPrice] = _PRICES,
        metadata: dict[str, Any] | None = None,
    ) -> _Row:
        row_id = user.new_id()
        row = _Row(
            id=row_id,
            action_type=spec.action,
            model_used=spec.model,
            tokens_used=spec.tokens,
            input_tokens=spec.input_tokens,
            output_tokens=spec.output_tokens,
            cost_estimate=price_cents(spec.model, spec.input_tokens, spec.output_tokens, prices),
            success=spec.success,
            error_message=None if spec.success else self.rng.choice(_ERRORS),
            # Request ids are unique per operation, so only a showcase repeats one.
            metadata=(
                {"request_id": f"req_{row_id.hex[:24]}", "client": self.rng.choice(_CLIENTS)}
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

    def specs(self, count: int | None, budget: int, *, failure_rate: float = 0.03) -> list[_Spec]:
        """Operations whose charged tokens stay within `budget`; `count=None` fills it nearly to the end."""
        drawn: list[_Spec] = []
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
        self, user: _User, specs: list[_Spec], start: datetime, end: datetime = REFERENCE_TIME
    ) -> list[_Row]:
        times = self.schedule(len(specs), start, end - timedelta(hours=1))
        return [self.operation(user, spec, at) for spec, at in zip(specs, times, strict=True)]

    # -- the population ------------------------------------------------------------------------------

    def clean_user(self, index: int) -> _User:
        """A user whose profile matches the ledger exactly, in one of the shapes real users take."""
        rng = self.rng
        email = f"{rng.choice(_FIRST_NAMES)}.{rng.choice(_LAST_NAMES)}.{index:03d}@{DEMO_DOMAIN}"
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

    def heavy(self) -> _User:
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

    def reconciled(self) -> _User:
        """Perfectly clean, with more than 50 rows (a few failed, not charged) so paging shows."""
        signup = REFERENCE_TIME - timedelta(days=120, hours=2)
        user = self.user(f"reconciled@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        specs = [self.draw(failure_rate=0) for _ in range(80)]
        for index in (17, 44, 71):
            specs[index] = _Spec(specs[index].action, specs[index].model, specs[index].input_tokens, 0, False)
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def failed_charged(self) -> _User:
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
            specs[index] = _Spec(action, drawn.model, drawn.input_tokens, 0, success=False)
        self.usage(user, specs, signup + timedelta(minutes=5))
        failed = [r for r in user.rows if not r.success]
        failed_tokens = sum(r.tokens_used for r in failed)
        user.used = user.ledger_used() + failed_tokens
        user.remaining = user.ledger_remaining() - failed_tokens
        user.cost = dollars(
            user.ledger_cents() + sum((r.cost_estimate or Decimal(0) for r in failed), Decimal(0))
        )
        return user

    def duplicates(self) -> _User:
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

    def _copy(self, user: _User, row: _Row, *, seconds: int) -> _Row:
        copy = replace(
            row,
            id=user.new_id(),
            metadata=dict(row.metadata),
            created_at=row.created_at + timedelta(seconds=seconds),
        )
        user.rows.append(copy)
        return copy

    def unlogged_grant(self) -> _User:
        """A third monthly cycle reached the balance but never the ledger: remaining is 600,000 high."""
        signup = REFERENCE_TIME - timedelta(days=80, hours=3)
        user = self.user(f"unlogged-grant@{DEMO_DOMAIN}", "monthly", signup)
        for cycle in range(2):
            at = signup + timedelta(days=30 * cycle, minutes=1)
            self.grant(user, MONTHLY, at, f"monthly membership, cycle {cycle + 1}")
        self.usage(user, self.specs(45, 2 * MONTHLY - 50_000), signup + timedelta(minutes=5))
        user.remaining = user.ledger_remaining() + MONTHLY
        return user

    def before_tracking(self) -> _User:
        """An early user: the profile has used tokens, but token tracking began after their usage."""
        signup = REFERENCE_TIME - timedelta(days=330, hours=4)
        user = self.user(f"before-tracking@{DEMO_DOMAIN}", "annual", signup)
        user.used = 842_117
        user.remaining = ANNUAL - user.used
        user.cost = Decimal("61.38")
        return user

    def cost_drift(self) -> _User:
        """Eight gpt-4o operations were charged at the old gpt-4o price; the profile total was since
        recomputed at today's prices, so the cached cost no longer matches the ledger's."""
        signup = REFERENCE_TIME - timedelta(days=150, hours=6)
        user = self.user(f"cost-drift@{DEMO_DOMAIN}", "annual", signup)
        self.grant(user, ANNUAL, signup + timedelta(minutes=1), "annual membership")
        # Every one of these actions runs on gpt-4o among other models; here all eight did.
        actions = ("vision_generation", "blueprint_generation", "vision_refinement", "chat_conversation") * 2
        early = [self.draw(action, failure_rate=0) for action in actions]
        early = [_Spec(s.action, "gpt-4o", s.input_tokens, s.output_tokens) for s in early]
        price_change = signup + timedelta(days=40)
        for spec, at in zip(
            early, self.schedule(8, signup + timedelta(minutes=5), price_change), strict=True
        ):
            self.operation(user, spec, at, prices=OLD_PRICES)
        self.usage(user, [self.draw(failure_rate=0) for _ in range(30)], price_change)
        # Every charged row here has a model and token counts, so today's price applies to each.
        today = [
            price_cents(str(r.model_used), int(r.input_tokens or 0), int(r.output_tokens or 0), _PRICES)
            for r in user.rows
            if r.charged
        ]
        user.cost = dollars(sum(today, Decimal(0)))
        return user

    def negative(self) -> _User:
        """A trial user the product let overspend: the ledger agrees, but the balance is below zero."""
        signup = REFERENCE_TIME - timedelta(days=45, hours=8)
        user = self.user(f"negative@{DEMO_DOMAIN}", None, signup)
        self.grant(user, 100_000, signup + timedelta(minutes=1), "welcome trial")
        specs = self.specs(None, 100_000 - 1_000)
        # Two large requests racing the balance check carried the user past zero.
        specs.append(_Spec("blueprint_generation", "gpt-4", 4_210, 5_030))
        specs.append(_Spec("life_vision_master_assembly", "gpt-4", 6_480, 2_790))
        self.usage(user, specs, signup + timedelta(minutes=5))
        return user

    def messy(self) -> _User:
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

    def not_set(self) -> _User:
        """A sign-up whose profile row exists with every balance column NULL, and no ledger rows yet."""
        user = self.user(f"not-set@{DEMO_DOMAIN}", None, REFERENCE_TIME - timedelta(days=2))
        user.unset = True
        return user


def _build() -> tuple[list[_User], dict[str, _User]]:
    builder = _Builder()
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


# ---------------------------------------------------------------------------------------------------
# Writing it: one set-based INSERT per table, from parallel arrays


_INSERT_AUTH = text(
    """
    INSERT INTO auth.users (id, email, created_at)
    SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:email AS text[]), CAST(:created_at AS timestamptz[]))
    """
)

_INSERT_PROFILES = text(
    """
    INSERT INTO public.user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,
        vibe_assistant_tokens_used, vibe_assistant_total_cost, created_at, updated_at)
    SELECT * FROM unnest(CAST(:user_id AS uuid[]), CAST(:tier AS text[]), CAST(:remaining AS bigint[]),
        CAST(:used AS bigint[]), CAST(:cost AS numeric[]), CAST(:created_at AS timestamptz[]),
        CAST(:updated_at AS timestamptz[]))
    """
)

_INSERT_USAGE = text(
    """
    INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,
        output_tokens, cost_estimate, success, error_message, metadata, created_at)
    SELECT id, user_id, action_type, model_used, tokens_used, input_tokens, output_tokens, cost_estimate,
           success, error_message, CAST(metadata AS jsonb), created_at
    FROM unnest(CAST(:id AS uuid[]), CAST(:user_id AS uuid[]), CAST(:action_type AS text[]),
        CAST(:model_used AS text[]), CAST(:tokens_used AS bigint[]), CAST(:input_tokens AS bigint[]),
        CAST(:output_tokens AS bigint[]), CAST(:cost_estimate AS numeric[]), CAST(:success AS boolean[]),
        CAST(:error_message AS text[]), CAST(:metadata AS text[]), CAST(:created_at AS timestamptz[]))
        AS u(id, user_id, action_type, model_used, tokens_used, input_tokens, output_tokens, cost_estimate,
             success, error_message, metadata, created_at)
    """
)


def _columns(records: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as parallel arrays: one bind parameter per column, so each table is one statement."""
    columns: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.items():
            columns.setdefault(key, []).append(value)
    return columns


def _insert(conn: Connection, users: list[_User]) -> int:
    """Insert users, profiles and ledger rows; returns the number of ledger rows."""
    conn.execute(
        _INSERT_AUTH,
        _columns({"id": u.id, "email": u.email, "created_at": u.signup} for u in users),
    )
    profiles = []
    for u in users:
        remaining, used, cost = u.profile()
        last = max((r.created_at for r in u.rows), default=u.signup)
        profiles.append(
            {
                "user_id": u.id,
                "tier": u.tier,
                "remaining": remaining,
                "used": used,
                "cost": cost,
                "created_at": u.signup,
                "updated_at": last,
            }
        )
    conn.execute(_INSERT_PROFILES, _columns(profiles))
    usage = [
        {
            "id": r.id,
            "user_id": u.id,
            "action_type": r.action_type,
            "model_used": r.model_used,
            "tokens_used": r.tokens_used,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cost_estimate": r.cost_estimate,
            "success": r.success,
            "error_message": r.error_message,
            "metadata": json.dumps(r.metadata, sort_keys=True),
            "created_at": r.created_at,
        }
        for u in users
        for r in u.rows
    ]
    conn.execute(_INSERT_USAGE, _columns(usage))
    return len(usage)
