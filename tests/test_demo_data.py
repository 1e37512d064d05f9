"""The demo data set in a database of its own: each showcase user shows exactly its finding with exact
tokens, everyone else reconciles, a second load is refused, and every load is identical."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from core.domain.check_report import CheckReport
from core.domain.errors import ProductDataExistsError
from core.domain.models import DataQualityKind, FindingKind, Verdict
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from demo.catalog import REFERENCE_TIME
from demo.data import DemoSummary, load_demo_data
from tests.support.databases import scratch_database

CONSUMPTION_ACTIONS = {
    "assessment_scoring",
    "vision_generation",
    "vision_refinement",
    "blueprint_generation",
    "chat_conversation",
    "audio_generation",
    "image_generation",
    "life_vision_category_summary",
    "life_vision_master_assembly",
    "prompt_suggestions",
    "frequency_flip",
}
MODELS = {"gpt-4", "gpt-4o", "gpt-5-mini", "dall-e-3", "tts-1", "whisper-1"}

# What each showcase user must show: its one finding, and the verdict the check gives.
SHOWCASE = {
    "failed_charged": ("failed-charged@demo.example", FindingKind.FAILED_CHARGED, Verdict.PROBLEM),
    "duplicates": ("duplicates@demo.example", FindingKind.DUPLICATES, Verdict.PROBLEM),
    "unlogged_grant": ("unlogged-grant@demo.example", FindingKind.UNLOGGED_GRANT, Verdict.PROBLEM),
    "usage_before_tracking": (
        "before-tracking@demo.example",
        FindingKind.USAGE_BEFORE_TRACKING,
        Verdict.PROBLEM,
    ),
    # The tokens agree; only the cached dollar total differs, which is a minor discrepancy.
    "cost_drift": ("cost-drift@demo.example", FindingKind.COST_DRIFT, Verdict.MINOR),
    "negative_balance": ("negative@demo.example", FindingKind.NEGATIVE_BALANCE, Verdict.PROBLEM),
}
CLEAN_SHOWCASE = {"reconciled": "reconciled@demo.example", "heavy": "heavy@demo.example"}
# Users whose data needs interpreting (README "Your product's schema"); each reconciles once read so.
MESSY_SHOWCASE = {
    "messy": (
        "messy@demo.example",
        {
            DataQualityKind.NULL_SUCCESS,
            DataQualityKind.NULL_COST,
            DataQualityKind.FUTURE_TIME,
            DataQualityKind.NEAR_MISS_ACTION,
        },
    ),
    "not_set": ("not-set@demo.example", {DataQualityKind.PROFILE_UNSET}),
}

_FINGERPRINT_SQL = """
SELECT (SELECT count(*) FROM auth.users) AS users,
       (SELECT md5(string_agg(a::text, '|' ORDER BY a.id)) FROM auth.users a) AS users_md5,
       (SELECT count(*) FROM public.user_profiles) AS profiles,
       (SELECT md5(string_agg(p::text, '|' ORDER BY p.user_id)) FROM public.user_profiles p) AS profiles_md5,
       (SELECT count(*) FROM public.token_usage) AS ledger_rows,
       (SELECT sum(tokens_used) FROM public.token_usage) AS ledger_tokens,
       (SELECT sum(cost_estimate) FROM public.token_usage) AS ledger_cents,
       (SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM public.token_usage t) AS ledger_md5
"""


@dataclass(frozen=True)
class Demo:
    engine: Engine
    summary: DemoSummary
    settings: Settings
    service: TokensService


@contextmanager
def fresh_database(server_url: str) -> Iterator[Engine]:
    """An empty database with the bot's schema, dropped afterwards, so demo rows never meet other tests'."""
    with scratch_database(server_url, "tokens_bot_demo", product_tables=False) as url:
        engine = make_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            engine.dispose()


def load(engine: Engine, *, force: bool = False) -> DemoSummary:
    with engine.begin() as conn:
        return load_demo_data(conn, force=force)


def fingerprint(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text(_FINGERPRINT_SQL)).mappings().one())


@pytest.fixture(scope="module")
def demo(server_url: str) -> Iterator[Demo]:
    with fresh_database(server_url) as engine:
        summary = load(engine)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=str(engine.url),
            tokens_admins=["UADMIN1", "UADMIN2"],
        )
        yield Demo(engine, summary, settings, TokensService(settings, engine))


def ledger(conn: Connection, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        text("SELECT * FROM token_usage WHERE user_id = :u ORDER BY created_at, id"), {"u": user_id}
    ).mappings()
    return [dict(row) for row in rows]


def profile(conn: Connection, user_id: uuid.UUID) -> dict[str, Any]:
    return dict(
        conn.execute(text("SELECT * FROM user_profiles WHERE user_id = :u"), {"u": user_id}).mappings().one()
    )


def consumed(row: dict[str, Any]) -> bool:
    return row["success"] is not False and row["action_type"] in CONSUMPTION_ACTIONS


def priced(row: dict[str, Any], settings: Settings) -> Decimal:
    """Today's price of a row, computed here independently of the demo module."""
    price = settings.tokens_model_prices[row["model_used"]]
    cents = (row["input_tokens"] * price.input + row["output_tokens"] * price.output) / 1000
    return cents.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def expected_tokens(
    label: str, rows: list[dict[str, Any]], prof: dict[str, Any], demo: Demo
) -> tuple[int, int]:
    """(tokens, rows) the finding must carry, derived from the raw rows by the guide's own reasoning."""
    if label == "failed_charged":
        failed = [r for r in rows if not r["success"]]
        return sum(r["tokens_used"] for r in failed), len(failed)
    if label == "duplicates":
        doubled, seen_requests = [], set()
        ops = [r for r in rows if consumed(r)]
        for i, row in enumerate(ops):
            key = (row["action_type"], row["model_used"], row["input_tokens"], row["output_tokens"])
            twin = any(
                (o["action_type"], o["model_used"], o["input_tokens"], o["output_tokens"]) == key
                and row["created_at"] - o["created_at"] <= timedelta(seconds=2)
                for o in ops[:i]
            )
            request = row["metadata"].get("request_id")
            if twin or request in seen_requests:
                doubled.append(row)
            if request is not None:
                seen_requests.add(request)
        return sum(r["tokens_used"] for r in doubled), len(doubled)
    if label == "unlogged_grant":
        return demo.settings.tokens_tier_grants["monthly"], 0
    if label == "usage_before_tracking":
        assert rows == []
        return prof["vibe_assistant_tokens_used"], 0
    if label == "cost_drift":
        drifted = [
            r
            for r in rows
            if consumed(r)
            and abs(r["cost_estimate"] - priced(r, demo.settings)) > priced(r, demo.settings) / 20
        ]
        assert {r["model_used"] for r in drifted} == {"gpt-4o"}
        return sum(r["tokens_used"] for r in drifted), len(drifted)
    assert label == "negative_balance"
    return -prof["vibe_assistant_tokens_remaining"], 0


def test_each_showcase_user_shows_exactly_its_finding_with_exact_tokens(demo: Demo) -> None:
    """Every showcase email resolves and its check shows only its finding, with the tokens the rows imply."""
    assert set(demo.summary.showcase) == set(SHOWCASE) | set(CLEAN_SHOWCASE) | set(MESSY_SHOWCASE)
    for label, (email, kind, verdict) in SHOWCASE.items():
        user_id, summary_email = demo.summary.showcase[label]
        assert summary_email == email
        report = demo.service.check("UADMIN1", email)
        with demo.engine.connect() as conn:
            rows, prof = ledger(conn, user_id), profile(conn, user_id)
        tokens, row_count = expected_tokens(label, rows, prof, demo)
        assert (report.user.user_id, report.user.email) == (str(user_id), email)
        assert [f.kind for f in report.findings] == [kind], label
        finding = report.findings[0]
        assert tokens > 1_000, label  # large enough to be a problem, not noise
        assert (finding.tokens, finding.rows) == (tokens, row_count), label
        assert report.verdict is verdict, label
        _assert_explains_discrepancy(label, report, tokens)


def _assert_explains_discrepancy(label: str, report: CheckReport, tokens: int) -> None:
    """The finding is the whole story: the discrepancies are exactly what it explains."""
    b = report.balance
    discrepancies = {
        "failed_charged": (tokens, -tokens),  # charged for failures: used high, balance low
        "duplicates": (-tokens, tokens),  # ledger doubled, profile charged once
        "unlogged_grant": (0, tokens),
        "usage_before_tracking": (tokens, -tokens),
        "cost_drift": (0, 0),
        "negative_balance": (0, 0),
    }
    assert (b.used_discrepancy, b.remaining_discrepancy) == discrepancies[label], label
    if label == "cost_drift":
        assert b.cost_discrepancy != 0
    if label == "negative_balance":
        assert b.current_remaining == -tokens


def test_messy_showcase_users_name_every_reading_and_explain_their_discrepancy(demo: Demo) -> None:
    """not-set@ (a profile with NULL balances) reconciles; messy@ (a NULL success, a NULL cost, a future
    date, and a goodwill grant hand-typed as ` Admin_Grant`) differs by exactly what the near miss
    explains, since an unconfigured spelling counts as usage; each reading is named with its rows."""
    for label, (email, kinds) in MESSY_SHOWCASE.items():
        report = demo.service.check("UADMIN1", email)
        assert report.findings == [], label
        assert {note.kind for note in report.data_quality} == kinds, label
        # One row each; the near miss, read as usage, also has no cost.
        assert {n.kind: n.rows for n in report.data_quality} == {
            kind: 2 if kind is DataQualityKind.NULL_COST else 1 for kind in kinds
        }, label
    not_set = demo.service.check("UADMIN1", "not-set@demo.example")
    assert not_set.verdict is Verdict.RECONCILED
    assert not_set.balance.unset == ("remaining", "used", "cost") and not_set.balance.current_remaining == 0
    messy = demo.service.check("UADMIN1", "messy@demo.example")
    [near_miss] = [n for n in messy.data_quality if n.kind is DataQualityKind.NEAR_MISS_ACTION]
    assert near_miss.tokens == 50_000 and "TOKENS_GRANT_ACTIONS" in near_miss.summary
    b = messy.balance
    assert (b.used_discrepancy, b.remaining_discrepancy) == (-50_000, 100_000)
    configured = TokensService(
        demo.settings.model_copy(update={"tokens_grant_actions": ["admin_grant", " Admin_Grant"]}),
        demo.engine,
    ).check("UADMIN1", "messy@demo.example")
    assert configured.verdict is Verdict.RECONCILED and configured.balance.admin_grants == 50_000


def test_clean_showcase_users_reconcile_and_page_their_operations(demo: Demo) -> None:
    """reconciled@ and heavy@ reconcile with no findings, and their more-than-50 operations are paged."""
    size = demo.settings.tokens_page_size
    shown = demo.settings.tokens_recent_operations
    for label, email in CLEAN_SHOWCASE.items():
        report = demo.service.check("UADMIN1", email)
        assert report.user.user_id == str(demo.summary.showcase[label][0])
        assert report.verdict is Verdict.RECONCILED, label
        assert report.findings == [], label
        assert report.balance.ledger_rows > shown
        assert report.page.count == -(-shown // size)
        assert len(report.operations) == size
    heavy = demo.service.check("UADMIN1", "heavy@demo.example")
    assert heavy.balance.ledger_rows >= 2_000
    # Failed operations are visible among the reconciled user's recent ones, and were not charged.
    pages = [demo.service.check("UADMIN1", "reconciled@demo.example", page=n) for n in range(1, 6)]
    operations = [op for report in pages for op in report.operations]
    assert len({op.id for op in operations}) == shown
    assert any(not op.success for op in operations)


def test_every_other_user_reconciles(demo: Demo) -> None:
    """All ~200 ordinary users, tier-only and grant-logged alike, reconcile exactly with no findings."""
    showcase_ids = {user_id for user_id, _ in demo.summary.showcase.values()}
    with demo.engine.connect() as conn:
        users = [
            (user_id, email)
            for user_id, email in conn.execute(text("SELECT id, email FROM auth.users ORDER BY email"))
            if user_id not in showcase_ids
        ]
    assert 190 <= len(users) <= 210
    for user_id, email in users:
        report = demo.service.check("UADMIN1", email)
        assert report.user.user_id == str(user_id)
        assert (report.verdict, report.findings) == (Verdict.RECONCILED, []), email


def test_data_set_is_realistic_and_exact(demo: Demo) -> None:
    """Every action type and model occurs, token and cent arithmetic is exact, low balances and tiers vary."""
    with demo.engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM user_profiles), (SELECT count(*) FROM auth.users),"
                " (SELECT count(*) FROM token_usage),"
                " (SELECT count(*) FROM auth.users WHERE email NOT LIKE '%@demo.example')"
            )
        ).one()
        rows = [dict(r) for r in conn.execute(text("SELECT * FROM token_usage")).mappings()]
        profiles = [dict(r) for r in conn.execute(text("SELECT * FROM user_profiles")).mappings()]
    assert tuple(counts) == (demo.summary.users, demo.summary.users, demo.summary.ledger_rows, 0)
    consumption = [r for r in rows if r["action_type"] in CONSUMPTION_ACTIONS]
    assert {r["action_type"] for r in consumption} == CONSUMPTION_ACTIONS
    assert {r["model_used"] for r in consumption} == MODELS
    assert {r["action_type"] for r in rows} == CONSUMPTION_ACTIONS | {
        "admin_grant",
        "admin_deduct",
        " Admin_Grant",
    }
    assert all(r["cost_estimate"] is None for r in rows if "admin" in r["action_type"].lower())
    assert all(r["input_tokens"] + r["output_tokens"] == r["tokens_used"] for r in consumption)
    cost_drift_user = demo.summary.showcase["cost_drift"][0]
    mispriced = [
        r
        for r in consumption
        if r["cost_estimate"] is not None and r["cost_estimate"] != priced(r, demo.settings)
    ]
    assert len(mispriced) == 8
    assert {r["user_id"] for r in mispriced} == {cost_drift_user}
    failed = [r for r in consumption if r["success"] is False]
    assert len(failed) > 100 and all(r["error_message"] for r in failed)
    future = [r for r in rows if r["created_at"] > REFERENCE_TIME]
    assert [r["user_id"] for r in future] == [demo.summary.showcase["messy"][0]]
    times = [r["created_at"] for r in rows if r not in future]
    assert max(times) < REFERENCE_TIME and REFERENCE_TIME - min(times) > timedelta(days=180)
    low = [p for p in profiles if 0 <= (p["vibe_assistant_tokens_remaining"] or 0) < 10_000]
    assert len(low) >= 10
    assert {p["membership_tier"] for p in profiles} == {"annual", "monthly", None}
    assert all(
        p["vibe_assistant_total_cost"] == p["vibe_assistant_total_cost"].quantize(Decimal("0.01"))
        for p in profiles
        if p["vibe_assistant_total_cost"] is not None
    )


def test_second_load_is_refused_and_writes_nothing(demo: Demo) -> None:
    """Loading again without force raises ProductDataExistsError and leaves every table as it was."""
    before = fingerprint(demo.engine)
    with demo.engine.begin() as conn, pytest.raises(ProductDataExistsError, match="already hold"):
        load_demo_data(conn)
    assert fingerprint(demo.engine) == before


def test_forced_reload_replaces_only_demo_rows(server_url: str) -> None:
    """force=True reloads the same demo rows over earlier ones and leaves non-demo rows alone."""
    with fresh_database(server_url) as engine:
        first = load(engine)
        demo_only = fingerprint(engine)
        other = uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining) VALUES (:u, 7)"),
                {"u": other},
            )
        assert load(engine, force=True) == first
        after = fingerprint(engine)
        assert after["profiles"] == demo_only["profiles"] + 1
        assert {k: v for k, v in after.items() if not k.startswith("profiles")} == {
            k: v for k, v in demo_only.items() if not k.startswith("profiles")
        }
        with engine.connect() as conn:
            kept = conn.execute(
                text("SELECT vibe_assistant_tokens_remaining FROM user_profiles WHERE user_id = :u"),
                {"u": other},
            ).scalar_one()
        assert kept == 7


def test_two_loads_into_fresh_databases_are_identical(server_url: str) -> None:
    """Two loads into two fresh databases give identical ids, counts, tokens, cents and row contents."""
    prints, summaries = [], []
    for _ in range(2):
        with fresh_database(server_url) as engine:
            summaries.append(load(engine))
            prints.append(fingerprint(engine))
    assert summaries[0] == summaries[1]
    assert prints[0] == prints[1]
    assert prints[0]["ledger_rows"] == summaries[0].ledger_rows > 10_000
    assert prints[0]["users"] == summaries[0].users
