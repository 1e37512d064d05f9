"""The two drawings on hand-made values, and the chart command's grammar: pure functions, no database."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from PIL import Image

from bot.command_models import ChartCommand
from bot.commands import parse_command
from bot.render.charts import fleet_trend_png, usage_chart_png
from core.domain.charts import DigestPoint, FleetTrend, UsageChart, UsageDay
from core.domain.errors import UsageError
from core.domain.models import UserRef, Verdict

TODAY = date(2026, 5, 3)
SERIES = ["chat_conversation", "image_generation", "other"]


def pixels(content: bytes) -> Image.Image:
    """The PNG decoded: 900 by 600 pixels, and a picture rather than one flat colour."""
    assert content.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(content)).convert("RGB")
    assert image.size == (900, 600)
    colours = image.getcolors(maxcolors=900 * 600)
    assert colours is not None and len(colours) > 10
    return image


def chart(
    days: int = 30,
    *,
    profile_gap: int = 0,
    label: str = "ada@example.com",
    scale: int = 1,
    series: list[str] | None = None,
) -> UsageChart:
    """A user with a grant on the first day, usage most days, a failure and a deduction along the way."""
    rows, remaining = [], 0
    for i in range(days):
        granted = 100_000 * scale if i == 0 else 0
        deducted = 2_000 * scale if i == days // 2 else 0
        used = {"chat_conversation": (300 + 17 * i) * scale, "image_generation": (i % 4) * 250 * scale}
        if i % 5 == 0:
            used["other"] = 90 * scale
        remaining += granted - deducted - sum(used.values())
        rows.append(
            UsageDay(
                day=TODAY - timedelta(days=days - 1 - i),
                used=used,
                failed=1_200 * scale if i % 7 == 3 else 0,
                granted=granted,
                deducted=deducted,
                remaining=remaining,
            )
        )
    return UsageChart(
        user=UserRef(user_id="3f6c1a52-8d1e-4c1b-9a57-2f0e6a9d4b10", email=label),
        verdict=Verdict.PROBLEM if profile_gap else Verdict.RECONCILED,
        grouped_by="action",
        series=SERIES if series is None else series,
        days=rows,
        current_remaining=remaining + profile_gap,
        expected_remaining=remaining,
    )


def test_the_usage_chart_is_a_phone_sized_png_and_the_same_values_draw_the_same_bytes() -> None:
    """Pure: equal values give equal pictures; a gap to the profile changes the picture."""
    reconciled = usage_chart_png(chart())
    pixels(reconciled)
    assert usage_chart_png(chart()) == reconciled
    assert usage_chart_png(chart(profile_gap=-13_793)) != reconciled


@pytest.mark.parametrize(
    "value",
    [
        chart(1),
        chart(366, profile_gap=5),
        chart(90, scale=10**12, profile_gap=-(10**15)),  # past float's exact integers: drawn, not wrong
        chart(30, label="$x$ \\frac{ & <!channel>\nsecond line " + "é" * 200),
        chart(30, series=[]),  # nothing used: an empty lower panel that says so
    ],
    ids=["one-day", "leap-year", "huge", "hostile-label", "no-series"],
)
def test_the_usage_chart_draws_edge_cases(value: UsageChart) -> None:
    pixels(usage_chart_png(value))


def test_a_chart_without_days_still_draws() -> None:
    pixels(usage_chart_png(chart().model_copy(update={"days": []})))


def trend(digests: int, consumption_days: int) -> FleetTrend:
    start = datetime(2026, 4, 1, 7, tzinfo=UTC)
    return FleetTrend(
        channel="C0123456789",
        digests=[
            DigestPoint(
                at=start + timedelta(days=i),
                discrepant=40 - i,
                new=i % 4,
                resolved=(i + 2) % 5,
                low_balances=20 + i % 3,
                negative=i % 2,
            )
            for i in range(digests)
        ],
        consumption=[
            (start.date() + timedelta(days=i), 300_000 + 7_919 * i) for i in range(consumption_days)
        ],
    )


@pytest.mark.parametrize(("digests", "days"), [(30, 30), (1, 1), (0, 0), (0, 5), (90, 90)])
def test_the_trend_chart_draws_any_number_of_digests(digests: int, days: int) -> None:
    pixels(fleet_trend_png(trend(digests, days)))


def test_the_trend_chart_shows_its_values() -> None:
    assert fleet_trend_png(trend(30, 30)) != fleet_trend_png(trend(30, 29))


def test_chart_command_grammar() -> None:
    """A user and optionally days (`30` or `30d`), 90 by default, 1 to 366; anything else says what to type."""
    assert parse_command("chart ada@example.com") == ChartCommand(user="ada@example.com", days=90)
    assert parse_command("chart ada@example.com 30d") == ChartCommand(user="ada@example.com", days=30)
    assert parse_command("CHART ada@example.com 366").days == 366  # type: ignore[union-attr]
    for text, expected in {
        "chart": "takes a user",
        "chart ada@example.com 0": "1 to 366 days",
        "chart ada@example.com 367": "1 to 366 days",
        "chart ada@example.com -5": "is not a number of days",
        "chart ada@example.com ٣": "is not a number of days",
        "chart ada@example.com 1" + "0" * 5000: "1 to 366 days",
        "chart <@U123> 5": "names a Slack user",
    }.items():
        with pytest.raises(UsageError, match=expected):
            parse_command(text)
