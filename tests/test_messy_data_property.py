"""Property: on messy ledgers and profiles the check, the discrepancy scan and the digest equal an
independent computation for every user; and one NULL profile among thousands leaves every list right.

The schema is messy but fixed (text row ids, user ids uuid in the profiles and text in the ledger,
numeric tokens so sums pass bigint, float cents, timestamps without time zone, metadata as text, an
enum tier, profiles behind a view); the expectations come from tests.support.expected_balances.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.expected_balances import Expected, Problems, assert_balance_matches, expected_balances
from tests.support.product_variants import Variant, insert_rows, insert_user, variant_database

ACTOR = "UADMIN1"
MESSY = Variant(
    "messy",
    id_type="text",
    ledger_user="text",
    auth_id="text",
    tokens_type="numeric",
    cost_type="double precision",
    total_cost_type="numeric(14,4)",
    balance_type="numeric",
    created_type="timestamp",
    metadata_type="text",
    tier_type="enum",
    profiles_view=True,
)
FLEET = Variant("fleet")


def service_for(url: str, engine: Engine, **overrides: Any) -> TokensService:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        tokens_admins=[ACTOR],
        tokens_page_size=25,
        **overrides,
    )
    return TokensService(settings, engine)


@pytest.fixture(scope="module")
def messy(server_url: str) -> Iterator[tuple[str, Engine]]:
    with variant_database(server_url, MESSY, lambda conn, v: None) as url:
        engine = make_engine(url, pool_size=2)
        yield url, engine
        engine.dispose()


METADATA = [None, "{}", '{"request_id": "r1"}', '{"source": "slack", "request_id": 3}', "[1, 2]", '"x"']
METADATA += ["42", "{invalid", "null"]
huge = st.integers(min_value=10**18, max_value=10**21)
tokens = st.one_of(
    st.none(),
    st.integers(min_value=-5_000, max_value=50_000),
    st.sampled_from([600_000, 5_000_000]),
    huge,
    st.decimals(min_value=-100, max_value=100_000, places=1, allow_nan=False, allow_infinity=False),
)
ledger_row = st.fixed_dictionaries(
    {
        "action_type": st.sampled_from(
            ["chat_conversation", "admin_grant", "admin_deduct", " Admin_Grant", "ADMIN_DEDUCT", None, ""]
        ),
        "tokens_used": tokens,
        "cost_estimate": st.one_of(
            st.none(),
            st.decimals(min_value=-50, max_value=100_000, places=2, allow_nan=False, allow_infinity=False),
        ),
        "success": st.sampled_from([True, True, False, None]),
        "created_at": st.one_of(
            st.none(),
            st.integers(min_value=1, max_value=28).map(lambda d: f"2025-03-{d:02d} 12:00:00+00"),
            st.just("2099-12-31 00:00:00+00"),
        ),
        "metadata": st.sampled_from(METADATA),
    }
)
profile = st.fixed_dictionaries(
    {
        "tier": st.sampled_from([None, "annual", "monthly", "lifetime"]),
        "remaining": st.one_of(st.none(), st.integers(min_value=-(10**6), max_value=10**7), huge),
        "used": st.one_of(st.none(), st.integers(min_value=0, max_value=10**7), huge),
        "cost": st.one_of(
            st.none(),
            st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False, allow_infinity=False),
        ),
        "profile": st.sampled_from([True, True, True, False]),
        "rows": st.lists(ledger_row, max_size=10),
    }
)


def load(conn: Connection, users: list[dict[str, Any]]) -> None:
    conn.execute(text("TRUNCATE token_usage, user_profiles_base, auth.users"))
    rows = []
    for n, user in enumerate(users):
        uid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"messy-{n}"))
        insert_user(
            conn,
            MESSY,
            {**user, "key": f"u{n}", "id": uid, "email": f"u{n}@messy.example", "cost": _text(user["cost"])},
        )
        rows += [{**r, "user_id": uid, "tokens_used": _text(r["tokens_used"])} for r in user["rows"]]
    insert_rows(conn, MESSY, rows)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def compare_everything(
    service: TokensService,
    expected: dict[str, Expected],
    problems: Problems,
    *,
    checked: set[str] | None = None,
) -> None:
    """The check (of `checked` users, default all), every scan page and the digest against the independent numbers."""
    for uid, want in expected.items():
        if checked is not None and uid not in checked:
            continue
        with problems.section(f"check {uid}"):
            assert_balance_matches(service.check(ACTOR, uid).balance, want, f"check {uid}")
    with problems.section("scan"):
        scanned, page = {}, 1
        while True:
            report = service.discrepancies(ACTOR, 0, page=page)
            scanned.update({r.user.user_id: r for r in report.rows})
            if not report.page.has_next:
                break
            page += 1
        assert set(scanned) == {u for u, e in expected.items() if e.listed(0)}
        for uid, row in scanned.items():
            assert_balance_matches(row.balance, expected[uid], f"scan {uid}")
    with problems.section("digest"):
        digest = service.digest("CMESSY", lambda r: None, remember=False)
        assert digest.discrepant == sum(1 for e in expected.values() if e.listed(100))
        t = digest.totals
        assert (t.users, t.remaining, t.used, t.cost, t.negative, t.unset) == (
            len(expected),
            sum(e.current_remaining for e in expected.values()),
            sum(e.current_used for e in expected.values()),
            sum((e.current_cost for e in expected.values()), Decimal(0)),
            sum(1 for e in expected.values() if e.current_remaining < 0),
            sum(1 for e in expected.values() if "remaining" in e.unset),
        )
        for row in digest.new_rows:
            assert_balance_matches(row.balance, expected[row.user.user_id], f"digest {row.user.user_id}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.lists(profile, min_size=1, max_size=6))
def test_messy_ledgers_read_the_same_in_the_check_the_scan_and_the_digest(
    messy: tuple[str, Engine], users: list[dict[str, Any]]
) -> None:
    """NULLs everywhere, odd metadata, near-miss types, future and NULL dates, negative and huge values."""
    url, engine = messy
    with engine.begin() as conn:
        load(conn, users)
    with engine.connect() as conn:
        expected = expected_balances(conn, MESSY)
    problems = Problems()
    compare_everything(service_for(url, engine), expected, problems)
    problems.assert_none()


def load_fleet(conn: Connection, v: Variant) -> None:
    """3,000 monthly users with a logged grant and some usage (every 100th drifted), one of them NULL."""
    conn.execute(
        text("""
        INSERT INTO auth.users (id, email)
        SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'user' || i || '@fleet.example'
        FROM generate_series(1, 3000) i;
        INSERT INTO user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,
                                   vibe_assistant_tokens_used, vibe_assistant_total_cost)
        SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'monthly',
               600000 - (i * 7919) % 600000 - CASE WHEN i % 100 = 0 THEN 500 ELSE 0 END,
               (i * 7919) % 600000 + CASE WHEN i % 100 = 0 THEN 500 ELSE 0 END,
               round(((i * 7919) % 600000) / 100000.0, 2)
        FROM generate_series(1, 3000) i;
        INSERT INTO token_usage (user_id, action_type, tokens_used, cost_estimate, success, created_at)
        SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, a.action,
               CASE WHEN a.action = 'admin_grant' THEN 600000 ELSE (i * 7919) % 600000 END,
               CASE WHEN a.action = 'admin_grant' THEN NULL ELSE ((i * 7919) % 600000) / 1000.0 END,
               true, timestamptz '2025-05-01' + i * interval '1 minute' + a.n * interval '1 day'
        FROM generate_series(1, 3000) i,
             (VALUES (0, 'admin_grant'), (1, 'chat_conversation')) a(n, action);
        UPDATE user_profiles SET vibe_assistant_tokens_remaining = NULL, vibe_assistant_tokens_used = NULL,
               vibe_assistant_total_cost = NULL
        WHERE user_id = '00000000-0000-4000-8000-000000001234';
        """)
    )


def test_one_null_profile_among_thousands_leaves_every_list_right(server_url: str) -> None:
    """top, lowbalance, discrepancies and the digest: everyone listed right, the NULL profile at 0, not set."""
    with variant_database(server_url, FLEET, load_fleet) as url:
        engine = make_engine(url, pool_size=2)
        try:
            service = service_for(url, engine)
            with engine.connect() as conn:
                expected = expected_balances(conn, FLEET)
            null_user = "00000000-0000-4000-8000-000000001234"
            assert expected[null_user].unset == ("remaining", "used", "cost") and len(expected) == 3000
            problems = Problems()
            with problems.section("top"):
                top = [r for p in (1, 2, 3, 4) for r in service.top(ACTOR, 100, page=p).rows]
                want = sorted(expected.values(), key=lambda e: -e.current_used)[:100]
                assert [r.used for r in top] == [e.current_used for e in want]
                assert null_user not in {r.user.user_id for r in top}
            with problems.section("lowbalance"):
                low, page = [], 1
                while True:
                    report = service.lowbalance(ACTOR, 10_000, page=page)
                    low += report.rows
                    if not report.page.has_next:
                        break
                    page += 1
                want_low = sorted(
                    (e.current_remaining, u) for u, e in expected.items() if e.current_remaining < 10_000
                )
                assert sorted((r.remaining, r.user.user_id) for r in low) == want_low
                assert [r.user.user_id for r in low if r.remaining_unset] == [null_user]
            sample = {null_user} | {u for n, u in enumerate(sorted(expected)) if n % 97 == 0}
            compare_everything(service, expected, problems, checked=sample)
            problems.assert_none()
        finally:
            engine.dispose()
