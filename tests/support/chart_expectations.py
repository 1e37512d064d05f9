"""What a chart must show, computed plainly from the rows a test wrote: never by the query under test.

A row's UTC day, its kind by action type (exactly as configured), NULL success as success, NULL tokens as
0; the remaining line walked back from the check's expected balance; series chosen and ranked in Python.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP

from sqlalchemy import Engine, text

from core.domain.charts import UsageChart
from core.services.service import TokensService
from tests.support.ledger import add_usage, add_user

GRANT, DEDUCT, RESET = "admin_grant", "admin_deduct", "subscription_grant"
PLUS_TWO = timezone(timedelta(hours=2))
Bucket = tuple[date, dict[str, int], int, int, int, int]
"""A day as compared: day, used per label (zeros dropped), failed, granted, deducted, remaining."""


def at(day: date, hour: int = 12, minute: int = 0, tz: timezone = UTC) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


@dataclass(frozen=True)
class Row:
    """A ledger row as the test wrote it; `when` None is a NULL created_at."""

    when: datetime | None
    tokens: int | None
    action: str | None = "chat_conversation"
    model: str | None = "gpt-4o"
    success: bool | None = True


def write(engine: Engine, rows: list[Row], *, remaining: int = 0) -> str:
    with engine.begin() as conn:
        user = add_user(conn, remaining=remaining)
        for row in rows:
            row_id = add_usage(
                conn,
                user,
                tokens=0,
                action="x",
                model=row.model,
                success=True,
                at=row.when or datetime.now(UTC),
            )
            conn.execute(
                text(
                    "UPDATE token_usage SET tokens_used = :t, action_type = :a, success = :s,"
                    " created_at = CAST(:at AS timestamptz) WHERE id = :id"
                ),
                {"t": row.tokens, "a": row.action, "s": row.success, "at": row.when, "id": row_id},
            )
    return user


def label_of(value: str | None) -> str:
    """A series label: the text as stored (an empty action type too), "(none)" for NULL."""
    return "(none)" if value is None else value


def expected_days(
    rows: list[Row], first: date, last: date, expected_remaining: int, by: str, labels: dict[str, str]
) -> list[Bucket]:
    """The buckets, computed plainly: a row's UTC day, its kind by action type, NULL success a success."""
    used: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failed: dict[date, int] = defaultdict(int)
    granted: dict[date, int] = defaultdict(int)
    deducted: dict[date, int] = defaultdict(int)
    for row in rows:
        if row.when is None:
            continue
        day = row.when.astimezone(UTC).date()
        if not first <= day <= last:
            continue
        tokens, ok = row.tokens or 0, row.success is not False
        if row.action in (GRANT, RESET):
            granted[day] += tokens if ok else 0
        elif row.action == DEDUCT:
            deducted[day] += tokens if ok else 0
        elif not ok:
            failed[day] += tokens
        else:
            raw = label_of(row.action if by == "action" else row.model)
            used[day][labels[raw]] += tokens
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    out: list[Bucket] = []
    after = 0
    for day in reversed(days):
        out.append(
            (
                day,
                {k: v for k, v in used[day].items() if v},
                failed[day],
                granted[day],
                deducted[day],
                expected_remaining - after,
            )
        )
        after += granted[day] - sum(used[day].values()) - deducted[day]
    return list(reversed(out))


def shown(chart: UsageChart) -> list[Bucket]:
    return [
        (d.day, {k: v for k, v in d.used.items() if v}, d.failed, d.granted, d.deducted, d.remaining)
        for d in chart.days
    ]


def series_of(rows: list[Row], first: date, last: date) -> tuple[str, list[str], dict[str, str]]:
    """Grouping, stacking order and label of each raw value, chosen as the chart promises."""
    usage = [
        r
        for r in rows
        if r.when is not None
        and first <= r.when.astimezone(UTC).date() <= last
        and r.action not in (GRANT, DEDUCT, RESET)
        and r.success is not False
    ]
    actions = {label_of(r.action) for r in usage}
    models = {label_of(r.model) for r in usage}
    by = "action" if len(actions) <= len(models) else "model"
    totals: dict[str, int] = defaultdict(int)
    for r in usage:
        totals[label_of(r.action if by == "action" else r.model)] += r.tokens or 0
    ranked = sorted(totals, key=lambda label: (-totals[label], label))
    labels = {label: (label if i < 5 else "other") for i, label in enumerate(ranked)}
    order = ranked[:5] + (["other"] if len(ranked) > 5 else [])
    return by, order, labels


def assert_chart(service: TokensService, user: str, rows: list[Row], today: date, days: int) -> UsageChart:
    chart = service.usage_chart("UADMIN1", user, days=days)
    check = service.check("UADMIN1", user)
    first = today - timedelta(days=days - 1)
    by, order, labels = series_of(rows, first, today)
    assert (chart.grouped_by, chart.series) == (by, order)
    assert chart.expected_remaining == check.balance.expected_remaining
    assert chart.current_remaining == check.balance.current_remaining
    assert chart.verdict == check.verdict
    assert shown(chart) == expected_days(rows, first, today, check.balance.expected_remaining, by, labels)
    assert chart.days[-1].remaining == chart.expected_remaining
    return chart


def read_rows(engine: Engine) -> dict[str, list[Row]]:
    """Every ledger row as stored, read plainly: a time without zone (or a date) is UTC, a fraction of a
    token rounds half away from zero, success is false only when the product wrote a false value. Times
    Python cannot hold (infinity, BC) are read as None: like a NULL time, they are in no day."""
    out: dict[str, list[Row]] = defaultdict(list)
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT user_id::text AS u, CASE WHEN created_at BETWEEN '1900-01-01' AND '3000-01-01'"
                " THEN created_at END AS created, action_type::text AS a, model_used::text AS m,"
                " tokens_used::numeric AS n, lower(success::text) AS s FROM token_usage"
            )
        )
        for r in stored:
            when = r.created
            if isinstance(when, date) and not isinstance(when, datetime):
                when = datetime(when.year, when.month, when.day, tzinfo=UTC)
            elif when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            tokens = None if r.n is None else int(r.n.quantize(1, rounding=ROUND_HALF_UP))
            success = None if r.s is None else r.s not in ("false", "f", "0", "no", "n")
            out[r.u].append(Row(when, tokens, r.a, r.m, success))
    return out
