"""The pictures' numbers: a user's daily buckets and the digest trend, against independent computations.

Each expectation is computed in Python from the rows the test wrote (tests.support.chart_expectations),
never by the query under test, on a real PostgreSQL in a database of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from core.domain.errors import NothingToChartError, UsageError, UserNotFoundError
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.chart_expectations import (
    DEDUCT,
    GRANT,
    PLUS_TWO,
    RESET,
    Row,
    assert_chart,
    at,
    read_rows,
    write,
)
from tests.support.databases import scratch_database
from tests.support.ledger import add_usage, add_user
from tests.support.product_variants import VARIANTS, Variant, variant_database
from tests.support.variant_data import load_dataset


@pytest.fixture(scope="module")
def charts_url(server_url: str) -> Iterator[str]:
    """A database of its own whose ledger allows a NULL action type, as many products' do."""
    with scratch_database(server_url, "tokens_charts") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE token_usage ALTER COLUMN action_type DROP NOT NULL"))
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def charts_engine(charts_url: str) -> Iterator[Engine]:
    engine = make_engine(charts_url)
    yield engine
    engine.dispose()


def chart_settings(url: str, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        tokens_admins=["UADMIN1"],
        tokens_reset_actions=[RESET],
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def service(charts_url: str, charts_engine: Engine) -> TokensService:
    return TokensService(chart_settings(charts_url), charts_engine)


@pytest.fixture(scope="module")
def today(charts_engine: Engine) -> date:
    """The database's UTC day; a test starting within a minute of midnight waits for the new day."""
    with charts_engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one().astimezone(UTC)
    left = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()
    if left < 60:
        time.sleep(left + 1)
        return (now + timedelta(seconds=left + 1)).date()
    return now.date()


def test_a_crafted_ledger_buckets_by_utc_day(
    service: TokensService, charts_engine: Engine, today: date
) -> None:
    """Failed rows, grants, deductions, a reset, empty days, +02:00 times near midnight, NULL and future
    times: every day's numbers are the plain sums, and the line ends at the check's expected balance."""
    d = [today - timedelta(days=i) for i in range(11)]
    rows = [
        Row(at(d[10], 23, 59), 400),  # the day before the window
        Row(at(d[9], 0, 0), 1_000, GRANT, None),  # the window's first instant
        Row(at(d[8]), 100),
        Row(at(d[8]), 50, success=False),
        Row(at(d[8]), 30, "image_generation", "dall-e-3", success=None),  # NULL success: a success
        # 23:30 at +02:00 is 21:30 UTC the same day; 01:30 at +02:00 the next day is still 23:30 UTC here.
        Row(at(d[6], 23, 30, PLUS_TWO), 11),
        Row(at(d[5], 1, 30, PLUS_TWO), 13, "image_generation", "dall-e-3"),
        Row(at(d[5], 2, 30, PLUS_TWO), 17),  # 00:30 UTC: d[5]
        Row(at(d[4]), 5_000, RESET, None),
        Row(at(d[3]), 200, DEDUCT, None),
        Row(at(d[2]), 9, None, None),  # NULL action type and model: usage, labelled (none)
        Row(at(d[2]), None),  # NULL tokens: 0
        Row(at(d[1]), 300, GRANT, None),
        Row(at(d[1]), 999, GRANT, None, success=False),  # a failed grant adds nothing
        Row(at(d[0], 0, 0), 10),  # today's first instant
        Row(None, 7_777),  # no time: in the balance, in no day
        Row(datetime.now(UTC) + timedelta(days=2), 555),  # after today: in the balance, in no day
    ]
    user = write(charts_engine, rows, remaining=4_000)
    chart = assert_chart(service, user, rows, today, days=10)
    by_day = {x.day: x for x in chart.days}
    assert len(chart.days) == 10 and chart.days[0].day == d[9] and chart.days[-1].day == today
    assert by_day[d[7]].used == {} and by_day[d[7]].failed == 0  # a day without rows
    assert by_day[d[6]].used == {"chat_conversation": 11, "image_generation": 13}
    assert (by_day[d[8]].failed, by_day[d[4]].granted, by_day[d[1]].granted) == (50, 5_000, 300)
    # After the reset the line is exact: 5,000 set, 200 deducted, 9 + 300 - 10 and the future 555.
    assert chart.expected_remaining == 5_000 - 200 - 9 + 300 - 10 - 555
    assert assert_chart(service, user, rows, today, days=1).days[0].used == {"chat_conversation": 10}


def test_the_rest_beyond_five_series_is_other_and_the_fewer_kind_wins(
    service: TokensService, charts_engine: Engine, today: date
) -> None:
    """Seven actions on eight models: by action, the top five kept and two summed as "other"; two
    models under three actions: by model; a tie: by action."""
    actions = [f"a{i}" for i in range(7)]
    many = [Row(at(today - timedelta(days=i % 3)), 100 * (i + 1), actions[i], f"m{i}") for i in range(7)]
    many.append(Row(at(today), 1, "a0", "m7"))
    many.append(Row(at(today), 650, "a5", "m0"))  # a5 ties a6 at 700: ordered by label
    chart = assert_chart(service, write(charts_engine, many), many, today, days=5)
    assert chart.grouped_by == "action" and chart.series == ["a5", "a6", "a4", "a3", "a2", "other"]
    assert sum(d.used.get("other", 0) for d in chart.days) == 100 + 200 + 1

    few_models = [Row(at(today), 5, f"a{i}", f"m{i % 2}") for i in range(3)]
    chart = assert_chart(service, write(charts_engine, few_models), few_models, today, days=3)
    assert chart.grouped_by == "model" and chart.series == ["m0", "m1"]

    tie = [Row(at(today), 5, "a0", "m0"), Row(at(today), 6, "a1", None)]
    chart = assert_chart(service, write(charts_engine, tie), tie, today, days=3)
    assert chart.grouped_by == "action" and chart.series == ["a1", "a0"]


def test_a_user_without_ledger_rows_and_bad_day_counts_are_refused(
    service: TokensService, charts_engine: Engine
) -> None:
    user = write(charts_engine, [], remaining=100)
    with pytest.raises(NothingToChartError, match="no rows in the token_usage ledger"):
        service.usage_chart("UADMIN1", user)
    for days in (0, 367):
        with pytest.raises(UsageError, match="1 to 366 days"):
            service.usage_chart("UADMIN1", user, days=days)


_ACTIONS = st.sampled_from(["chat", "image", None, GRANT, DEDUCT, RESET])
_MODELS = st.sampled_from(["gpt-4o", "gpt-5", None])


@st.composite
def _rows(draw: st.DrawFn, today: date) -> list[Row]:
    out = []
    for _ in range(draw(st.integers(0, 25))):
        offset = draw(st.one_of(st.none(), st.integers(-2, 14)))
        when = None
        if offset is not None:
            minute = draw(st.integers(0, 24 * 60 - 1))
            when = at(
                today - timedelta(days=offset),
                minute // 60,
                minute % 60,
                draw(st.sampled_from([UTC, PLUS_TWO])),
            )
            if when > datetime.now(UTC):
                when = datetime.now(UTC) + timedelta(days=3)  # plainly in the future
        out.append(
            Row(
                when,
                draw(st.one_of(st.none(), st.integers(-50, 100_000))),
                draw(_ACTIONS),
                draw(_MODELS),
                draw(st.sampled_from([True, False, None])),
            )
        )
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), days=st.integers(1, 12))
def test_daily_buckets_equal_plain_sums_for_any_ledger(
    service: TokensService, charts_engine: Engine, today: date, data: st.DataObject, days: int
) -> None:
    rows = data.draw(_rows(today))
    user = write(charts_engine, rows, remaining=data.draw(st.integers(-1_000, 1_000_000)))
    if not rows:
        with pytest.raises(NothingToChartError):
            service.usage_chart("UADMIN1", user, days=days)
        return
    assert_chart(service, user, rows, today, days)


def test_the_fleet_trend_follows_three_digests(server_url: str) -> None:
    """New, resolved, discrepant, low and negative per digest as each digest reported them (a digest from
    before migration 0005 shows 0 negative), and the fleet's successful consumption on every day of
    their span, empty days included."""
    with scratch_database(server_url, "tokens_trend") as url:
        engine = make_engine(url, pool_size=2)
        service = TokensService(chart_settings(url), engine)
        with engine.begin() as conn:
            today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
            old = at(today - timedelta(days=40))
            wrong = add_user(conn, remaining=500)
            right = add_user(conn, remaining=900)
            negative = add_user(conn, remaining=-50)
            for user in (wrong, right, negative):
                add_usage(conn, user, tokens=1_000, action=GRANT, model=None, at=old)
                add_usage(conn, user, tokens=100 if user != negative else 1_050, at=old)
        reports = [service.digest("CTREND", lambda report: "1.0001")]
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE user_profiles SET vibe_assistant_tokens_remaining = 900 WHERE user_id = :u"),
                {"u": wrong},
            )
            conn.execute(
                text("UPDATE user_profiles SET vibe_assistant_tokens_remaining = 5 WHERE user_id = :u"),
                {"u": right},
            )
        reports.append(service.digest("CTREND", lambda report: "1.0002"))
        reports.append(service.digest("CTREND", lambda report: "1.0003"))
        service.digest("CTREND", lambda report: "1.0004", remember=False)  # a dry run leaves no digest
        service.digest("COTHER", lambda report: "2.0001")
        spend = {4: [70, 30], 2: [5], 0: [1]}
        with engine.begin() as conn:
            # The digests were built over days: 4 days ago, 2 days ago and today; the first predates 0005.
            conn.execute(
                text(
                    "UPDATE tokens_bot.digests SET created_at = created_at - make_interval(days => :n),"
                    " negative = CASE WHEN :n = 4 THEN NULL ELSE negative END WHERE id = :id"
                ),
                [{"n": n, "id": i} for i, n in ((1, 4), (2, 2))],
            )
            spender = add_user(conn)
            for ago, amounts in spend.items():
                for tokens in amounts:
                    add_usage(conn, spender, tokens=tokens, at=at(today - timedelta(days=ago), 0, 0))
            add_usage(conn, spender, tokens=999, at=at(today - timedelta(days=2)), success=False)
            add_usage(conn, spender, tokens=5_000, action=GRANT, model=None, at=at(today - timedelta(days=3)))
            add_usage(conn, spender, tokens=444, at=at(today - timedelta(days=5), 23, 59))  # before the span
        trend = service.fleet_trend("CTREND")
        engine.dispose()
    got = [(p.discrepant, p.new, p.resolved, p.low_balances, p.negative) for p in trend.digests]
    want = [(r.discrepant, r.new, r.resolved, r.low.total, r.totals.negative) for r in reports]
    want[0] = (*want[0][:4], 0)
    assert got == want
    assert [p.at.astimezone(UTC).date() for p in trend.digests] == [
        today - timedelta(days=n) for n in (4, 2, 0)
    ]
    assert trend.consumption == [
        (today - timedelta(days=n), sum(spend.get(n, [])) + (1_050 + 200 if n == 40 else 0))
        for n in range(4, -1, -1)
    ]


def test_the_trend_shows_the_last_90_digests_each_against_the_one_before(server_url: str) -> None:
    """93 stored digests, another channel's interleaved: the 90 latest, oldest first, whose first is
    compared with the 91st latest; a user the previous digest only deferred is new, one now deferred is
    not resolved (as the digest itself counts them)."""
    with scratch_database(server_url, "tokens_trend90") as url:
        engine = make_engine(url, pool_size=2)
        service = TokensService(chart_settings(url), engine)
        users = [f"u{i}" for i in range(12)]
        stored: list[dict[str, bool]] = []  # per digest of CTREND: user -> deferred
        with engine.begin() as conn:
            for i in range(93):
                for channel in ("CTREND", "COTHER"):
                    digest_id = conn.execute(
                        text(
                            "INSERT INTO tokens_bot.digests (channel, created_at, minimum, discrepant,"
                            " low_balances, negative) VALUES (:c, now() - make_interval(days => :n), 100, 0, :i, :neg)"
                            " RETURNING id"
                        ),
                        {"c": channel, "n": 93 - i, "i": i, "neg": None if i < 50 else i % 4},
                    ).scalar_one()
                    rows = {u: (i + k) % 5 == 0 for k, u in enumerate(users) if (i * 7 + k * 3) % 4 != 0}
                    if channel == "COTHER":
                        rows = {u: False for u in users}
                    else:
                        stored.append(rows)
                    conn.execute(
                        text(
                            "INSERT INTO tokens_bot.digest_discrepancies (digest_id, user_id, worst,"
                            " used_discrepancy, remaining_discrepancy, deferred) VALUES (:d, :u, 1, 1, 1, :x)"
                        ),
                        [{"d": digest_id, "u": u, "x": x} for u, x in rows.items()] or [],
                    )
        trend = service.fleet_trend("CTREND")
        engine.dispose()
    assert len(trend.digests) == 90
    assert [p.low_balances for p in trend.digests] == list(range(3, 93))
    assert [p.negative for p in trend.digests] == [0 if i < 50 else i % 4 for i in range(3, 93)]
    for point, i in zip(trend.digests, range(3, 93), strict=True):
        now, before = stored[i], {u for u, deferred in stored[i - 1].items() if not deferred}
        new = {u for u, deferred in now.items() if not deferred and u not in before}
        assert (point.new, point.resolved) == (len(new), len(before - set(now))), i


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_charts_on_every_product_shape(server_url: str, variant: Variant) -> None:
    """Ids of any type, tokens with fractions, times without zone or as dates, success as text: every
    user's chart equals the plain sums, once the dataset's June 2025 is moved to the last four weeks."""
    with variant_database(server_url, variant, load_dataset) as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
            shift = (today - timedelta(days=1) - date(2025, 6, 28)).days
            conn.execute(
                text(
                    "UPDATE token_usage SET created_at = created_at + make_interval(days => :n) WHERE created_at < '2099-01-01'"
                ),
                {"n": shift},
            )
        rows = read_rows(engine)
        service = TokensService(
            Settings(_env_file=None, database_url=url, tokens_admins=["UADMIN1"]),  # type: ignore[call-arg]
            engine,
        )
        charted = 0
        for user, ledger in rows.items():
            try:
                assert_chart(service, user, ledger, today, days=40)
            except UserNotFoundError:
                continue
            charted += 1
        engine.dispose()
    assert charted >= 10
