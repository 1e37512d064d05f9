"""The demo's fixed world: its reference time, ids, tiers, prices, actions, names and errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from core.settings import ModelPrice, Settings

DEMO_DOMAIN = "demo.example"
# "Now" for the demo: a fixed instant, so the data (and every timestamp in it) is the same on every load.
REFERENCE_TIME = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
# uuid5 namespace of every demo id; any fixed UUID works, it only has to never change.
DEMO_NAMESPACE = uuid.UUID("0b7e4c52-9d3a-5f61-8a2e-3c4d5e6f7a81")
CLEAN_USERS = 200
HEAVY_OPERATIONS = 3_000
SEED = 20_250_203

# The class defaults, not the environment: the demo must not change with a deployment's overrides.
PRICES: dict[str, ModelPrice] = Settings.model_fields["tokens_model_prices"].default
TIER_GRANTS: dict[str, int] = Settings.model_fields["tokens_tier_grants"].default
ANNUAL = TIER_GRANTS["annual"]
MONTHLY = TIER_GRANTS["monthly"]
# gpt-4o's launch price, which the product charged before today's table: the cost-drift showcase's rows.
OLD_PRICES: dict[str, ModelPrice] = {
    **PRICES,
    "gpt-4o": ModelPrice(input=Decimal("0.5"), output=Decimal("1.5")),
}
CENT = Decimal("0.01")
PRICE_SCALE = Decimal("0.0001")


@dataclass(frozen=True)
class Action:
    """How often an action happens, on which models, and its typical token counts."""

    weight: int
    models: tuple[str, ...]
    input: tuple[int, int]
    output: tuple[int, int]


# The guide's eleven consumption action types with plausible models and sizes.
ACTIONS: dict[str, Action] = {
    "chat_conversation": Action(30, ("gpt-4o", "gpt-5-mini"), (200, 3_000), (80, 1_200)),
    "prompt_suggestions": Action(12, ("gpt-5-mini",), (150, 500), (60, 250)),
    "assessment_scoring": Action(8, ("gpt-4", "gpt-5-mini"), (800, 2_500), (150, 600)),
    "vision_refinement": Action(8, ("gpt-4o", "gpt-5-mini"), (1_000, 3_000), (400, 1_500)),
    "frequency_flip": Action(8, ("gpt-4o", "gpt-5-mini"), (200, 800), (150, 600)),
    "life_vision_category_summary": Action(7, ("gpt-5-mini", "gpt-4o"), (600, 2_000), (200, 700)),
    # Speech: tts-1 is priced per input character, whisper-1 per input audio token; no output tokens.
    "audio_generation": Action(6, ("tts-1", "whisper-1"), (300, 5_000), (0, 0)),
    "vision_generation": Action(5, ("gpt-4", "gpt-4o"), (1_500, 4_000), (1_200, 3_500)),
    # One or two images, 1,000 output tokens each (dall-e-3 charges per image, 4 cents).
    "image_generation": Action(5, ("dall-e-3",), (40, 400), (1, 2)),
    "blueprint_generation": Action(3, ("gpt-4", "gpt-4o"), (2_000, 5_000), (2_000, 6_000)),
    "life_vision_master_assembly": Action(2, ("gpt-4",), (4_000, 9_000), (1_500, 4_000)),
}
ACTION_NAMES = tuple(ACTIONS)
ACTION_WEIGHTS = tuple(a.weight for a in ACTIONS.values())

ERRORS = (
    "OpenAI API error 429: rate limit exceeded",
    "Request timed out after 60 s",
    "OpenAI API error 503: the engine is currently overloaded",
    "Content policy violation: the prompt was rejected",
    "Stream interrupted: client disconnected",
)
CLIENTS = ("web", "web", "ios", "android")
FIRST_NAMES = (
    "ava", "ben", "chloe", "dev", "elena", "felix", "grace", "hiro", "isla", "jonas", "kira", "liam",
    "maya", "noah", "olga", "priya", "quinn", "rafael", "sofia", "tariq", "uma", "victor", "wen", "ximena",
    "yusuf", "zoe", "amara", "bruno", "carmen", "dmitri",
)  # fmt: skip
LAST_NAMES = (
    "nguyen", "patel", "garcia", "kim", "okafor", "schmidt", "rossi", "tanaka", "silva", "cohen",
    "murphy", "novak", "haddad", "larsen", "mendes", "ivanova", "osei", "dubois", "khan", "lindqvist",
)  # fmt: skip


def price_cents(
    model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, ModelPrice]
) -> Decimal:
    """Cents for one operation, rounded half away from zero to 4 places exactly as the findings' SQL does."""
    price = prices[model]
    cents = (input_tokens * price.input + output_tokens * price.output) / 1000
    return cents.quantize(PRICE_SCALE, rounding=ROUND_HALF_UP)


def dollars(cents: Decimal) -> Decimal:
    """Profile cost in dollars: cents / 100 rounded to 2 places, as `round(sum / 100, 2)` in SQL."""
    return (cents / 100).quantize(CENT, rounding=ROUND_HALF_UP)
