"""The core on product databases unlike the guide's: future dates, shared emails, narrow columns, the
product's own constraints, row-level security. Each scenario gets a scratch database made with plain SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bot.render.reconcile import render_reconcile
from core.domain.approvals import Person
from core.domain.errors import AmbiguousUserError, InvalidAdjustmentError, ProductDataError, UserNotFoundError
from core.domain.fixes import Cause
from core.domain.models import DataQualityKind, Verdict
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from core.store.doctor import diagnose_database
from tests.support.databases import scratch_database
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import reply_text

ASKER = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
APPROVER = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")

# The product as its operators' migrations left it: model_used NOT NULL, a CHECK list of action types
# that lacks the deduction type, integer balances, costs in integer cents, no defaults anywhere.
NARROW_PRODUCT = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
CREATE TABLE user_profiles (
    user_id uuid PRIMARY KEY, membership_tier text,
    vibe_assistant_tokens_remaining integer, vibe_assistant_tokens_used integer,
    vibe_assistant_total_cost numeric(10, 4), extra jsonb);
CREATE TABLE token_usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id uuid NOT NULL,
    action_type text NOT NULL CHECK (action_type IN ('chat', 'admin_grant')),
    model_used text NOT NULL, tokens_used integer, cost_estimate integer, success boolean,
    metadata json, created_at timestamp);
CREATE INDEX ON token_usage (user_id, created_at DESC);
"""


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        tokens_admins=["UADMIN1", "UADMIN2"],
        tokens_approvals_channel="CAPPROVALS",
        **overrides,  # type: ignore[arg-type]
    )


@contextmanager
def product(server_url: str, ddl: str | None = None) -> Iterator[tuple[str, Engine]]:
    """A scratch database with the guide's tables, or with `ddl` instead, and the bot's schema."""
    with scratch_database(server_url, "tokens_odd", product_tables=ddl is None) as url:
        engine = make_engine(url, pool_size=2)
        try:
            if ddl is not None:
                with engine.begin() as conn:
                    conn.exec_driver_sql(ddl)
            yield url, engine
        finally:
            engine.dispose()


def test_a_future_dated_row_never_hides_a_discrepancy_from_the_scan(server_url: str) -> None:
    """The grace window is [now - grace, now]: a row dated next year is not "recent", so the user whose
    balance is off by more than that row's tokens is listed, and the check names the future row."""
    with product(server_url) as (url, engine):
        with engine.begin() as conn:
            user = add_user(conn, remaining=100_000 - 5_000, used=0)
            add_usage(conn, user, tokens=100_000, action="admin_grant", model=None)
            add_usage(conn, user, tokens=5_000, at=datetime.now(UTC) + timedelta(days=365))
        service = TokensService(settings_for(url), engine)
        scan = service.discrepancies("UADMIN1", 100)
        assert [row.user.user_id for row in scan.rows] == [user] and scan.deferred == 0
        check = service.check("UADMIN1", user)
        assert check.balance.used_discrepancy == -5_000
        [note] = check.data_quality
        assert (note.kind, note.rows, note.tokens) == (DataQualityKind.FUTURE_TIME, 1, 5_000)


def test_an_email_shared_by_two_users_is_refused_with_both_listed(server_url: str) -> None:
    with product(server_url) as (url, engine):
        with engine.begin() as conn:
            first = add_user(conn, email="Sam@Example.com")
            second = add_user(conn, email="sam@example.com")
        service = TokensService(settings_for(url), engine)
        with pytest.raises(AmbiguousUserError) as refusal:
            service.check("UADMIN1", "SAM@example.com")
        assert first in str(refusal.value) and second in str(refusal.value)
        assert "by id" in str(refusal.value)
        assert service.check("UADMIN1", first).user.email == "Sam@Example.com"


def test_corrections_obey_the_maximum_change(server_url: str) -> None:
    """A correction that would move the balance by more than TOKENS_MAX_ADJUSTMENT is refused when
    proposed, so an absurd initial grant can never become a balance of a trillion."""
    with product(server_url) as (url, engine):
        with engine.begin() as conn:
            user = add_user(conn, remaining=0, used=0)
        service = TokensService(settings_for(url, tokens_max_adjustment=1_000_000), engine)
        report = service.reconcile("UADMIN1", user, initial_grant=1_000_000_000_000)
        with pytest.raises(InvalidAdjustmentError, match="TOKENS_MAX_ADJUSTMENT"):
            service.propose_correction(ASKER, user, 1_000_000_000_000, report.snapshot)
        small = service.reconcile("UADMIN1", user, initial_grant=900_000)
        request = service.propose_correction(ASKER, user, 900_000, small.snapshot)
        assert service.approve(APPROVER, request.id).request.balance_after == 900_000


def test_approvals_respect_the_products_constraints_and_column_sizes(server_url: str) -> None:
    """model_used NOT NULL gets TOKENS_LEDGER_MODEL; a grant the integer column cannot hold and a
    deduction the CHECK list does not allow are both refused when asked, before anything is written."""
    with product(server_url, NARROW_PRODUCT) as (url, engine):
        user = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining) VALUES (:u, NULL)"
                ),
                {"u": user},
            )
        service = TokensService(settings_for(url, tokens_max_adjustment=5_000_000_000), engine)
        grant = service.request_adjustment(ASKER, user, 250_000, "welcome")
        decision = service.approve(APPROVER, grant.id)
        assert (decision.request.balance_before, decision.request.balance_after) == (0, 250_000)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT action_type, model_used, tokens_used, metadata FROM token_usage")
            ).one()
        assert (row.action_type, row.model_used, row.tokens_used) == ("admin_grant", "admin", 250_000)
        assert row.metadata["request_id"] == grant.id
        with pytest.raises(InvalidAdjustmentError, match="cannot hold"):
            service.request_adjustment(ASKER, user, 2_200_000_000, "too big for integer")
        # Refused when asked, not at the first click: the product's CHECK would reject the bot's row.
        with pytest.raises(ProductDataError, match="CHECK constraint"):
            service.request_adjustment(ASKER, user, -1_000, "refund reversal")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM token_usage")).scalar_one() == 1
            remaining = conn.execute(
                text("SELECT vibe_assistant_tokens_remaining FROM user_profiles")
            ).scalar_one()
        assert remaining == 250_000
        report = service.check("UADMIN1", user)
        assert report.verdict is Verdict.RECONCILED and report.balance.initial_grant.tokens == 250_000


def test_rows_hidden_by_row_level_security_are_never_called_reconciled(server_url: str) -> None:
    """A role under row-level security sees only some ledger rows: the check says so and is not reconciled."""
    with product(server_url) as (url, engine):
        role = f"rls_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            user = add_user(conn, remaining=1_000, used=0)
            add_usage(conn, user, tokens=1_000, action="admin_grant", model=None)
            conn.exec_driver_sql(
                f"CREATE ROLE {role} LOGIN PASSWORD 'rls-secret'; GRANT USAGE ON SCHEMA auth, tokens_bot TO {role};"
                f" GRANT SELECT ON ALL TABLES IN SCHEMA public, auth, tokens_bot TO {role};"
                f" GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tokens_bot TO {role};"
                " ALTER TABLE token_usage ENABLE ROW LEVEL SECURITY;"
                f" CREATE POLICY everything ON token_usage FOR SELECT TO {role} USING (true)"
            )
        as_role = (
            make_url(url).set(username=role, password="rls-secret").render_as_string(hide_password=False)
        )
        restricted = make_engine(as_role, pool_size=1)
        try:
            report = TokensService(settings_for(url), restricted).check("UADMIN1", user)
        finally:
            restricted.dispose()
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP OWNED BY {role}; DROP ROLE {role}")
        assert report.verdict is Verdict.MINOR
        assert [note.kind for note in report.data_quality] == [DataQualityKind.HIDDEN_ROWS]


def test_a_fix_under_row_level_security_is_never_verified_as_reconciled(server_url: str) -> None:
    """The bot's role under row-level security applies a fix that closes the visible gap; the verification,
    like the check, cannot call the user reconciled: the hidden rows could disagree."""
    with product(server_url) as (url, engine):
        role = f"rls_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            user = add_user(conn, remaining=1_600, used=0, email="rls-fix@example.com")
            add_usage(conn, user, tokens=1_000, action="admin_grant", model=None)
            conn.exec_driver_sql(
                f"CREATE ROLE {role} LOGIN PASSWORD 'rls-secret'; GRANT USAGE ON SCHEMA auth, tokens_bot TO {role};"
                f" GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public, tokens_bot TO {role};"
                f" GRANT SELECT ON ALL TABLES IN SCHEMA auth TO {role};"
                f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA tokens_bot TO {role};"
                f" GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tokens_bot TO {role};"
                " ALTER TABLE token_usage ENABLE ROW LEVEL SECURITY;"
                f" CREATE POLICY everything ON token_usage FOR ALL TO {role} USING (true) WITH CHECK (true)"
            )
        as_role = (
            make_url(url).set(username=role, password="rls-secret").render_as_string(hide_password=False)
        )
        restricted = make_engine(as_role, pool_size=1)
        try:
            service = TokensService(settings_for(url), restricted)
            check = service.check("UADMIN1", user)
            [option] = check.fixes
            assert option.cause is Cause.UNLOGGED_GRANT and check.snapshot is not None
            request = service.propose_fix(ASKER, user, option.cause, check.snapshot)
            service.approve(APPROVER, request.id)
            service.apply_fix(request.id, limit=10)
            closed, progress = service.finish_fix(request.id)
            after = service.check("UADMIN1", user)
        finally:
            restricted.dispose()
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP OWNED BY {role}; DROP ROLE {role}")
        assert (
            closed is not None and after.verdict is Verdict.MINOR and after.balance.remaining_discrepancy == 0
        )
        assert (progress.applied, progress.reconciled, progress.differing, progress.unverified) == (
            1,
            0,
            1,
            0,
        )


def test_doctor_explains_each_deviation_and_counts_the_odd_rows(server_url: str) -> None:
    """Doctor names every way the narrow product differs from the guide, what the bot does about it, and
    how many rows across the fleet each reading applied to."""
    with product(server_url, NARROW_PRODUCT) as (url, engine):
        user = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO user_profiles (user_id) VALUES (:u)"), {"u": user})
            conn.execute(
                text(
                    "INSERT INTO token_usage (user_id, action_type, model_used, tokens_used, metadata, created_at)"
                    " VALUES (:u, 'chat', 'gpt-4o', NULL, '[1, 2]', now() + interval '2 days')"
                ),
                {"u": user},
            )
        report = diagnose_database(engine, url, settings_for(url))
    notes = {(n.subject, n.found): n.meaning for n in report.schema_notes}
    assert "read as UTC" in notes[("token_usage.created_at", "timestamp without time zone")]
    assert "exactly" in notes[("token_usage.cost_estimate", "integer")]
    assert "0 tokens" in notes[("token_usage.tokens_used", "nullable")]
    assert "not set" in notes[("user_profiles.vibe_assistant_tokens_remaining", "nullable")]
    [refusal] = [n for n in report.schema_notes if n.subject == "approvals"]
    assert "'admin_deduct'" in refusal.found and "refused before anything is written" in refusal.meaning
    counts = {c.what: c.rows for c in report.odd_rows}
    assert counts["ledger rows with tokens_used NULL"] == 1
    assert counts["ledger rows dated in the future"] == 1
    assert counts["ledger rows whose metadata is not a JSON object"] == 1
    assert counts["profiles with remaining NULL"] == 1
    assert counts["ledger rows of users with no profile"] == 0


def test_a_product_without_cached_balances_is_told_plainly_everywhere(server_url: str) -> None:
    """The guide's product later dropped the balance columns for a balance computed on the fly: there is
    nothing to reconcile, and every command and doctor say so instead of reporting everyone as wrong."""
    ddl = """
    CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
    CREATE TABLE user_profiles (id uuid PRIMARY KEY, user_id uuid NOT NULL, is_active boolean, is_draft boolean);
    CREATE TABLE token_usage (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL,
        action_type text NOT NULL, model_used text, tokens_used integer, created_at timestamptz);
    CREATE TABLE token_transactions (id uuid PRIMARY KEY, user_id uuid, tokens_used integer);
    """
    with product(server_url, ddl) as (url, engine):
        user = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO user_profiles VALUES (gen_random_uuid(), :u, true, false)"), {"u": user}
            )
        service = TokensService(settings_for(url), engine)
        for call in (
            lambda: service.check("UADMIN1", user),
            lambda: service.discrepancies("UADMIN1"),
            lambda: service.request_adjustment(ASKER, user, 100, "welcome"),
        ):
            with pytest.raises(ProductDataError, match="keeps no cached balance"):
                call()
        report = diagnose_database(engine, url, settings_for(url))
    found = {(n.subject, n.found) for n in report.product_notes}
    assert any(subject == "user_profiles" and "no cached balance" in what for subject, what in found)
    assert ("public.token_transactions", "present") in found


def test_a_user_with_only_draft_profiles_is_told_so(server_url: str) -> None:
    ddl = NARROW_PRODUCT.replace(
        "user_id uuid PRIMARY KEY, membership_tier text,",
        "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id uuid NOT NULL, is_draft boolean,"
        " is_active boolean, updated_at timestamptz, membership_tier text,",
    )
    with product(server_url, ddl) as (url, engine):
        user = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO user_profiles (user_id, is_draft) VALUES (:u, true)"), {"u": user})
        with pytest.raises(UserNotFoundError, match="only draft"):
            TokensService(settings_for(url), engine).check("UADMIN1", user)


def test_after_a_reset_the_shown_formula_counts_from_the_reset_and_adds_up(server_url: str) -> None:
    """An annual grant that sets the balance: used stays lifetime, the formula subtracts only the usage
    after the reset, and the reconcile reply's formula shows those numbers, so it equals the expected."""
    with product(server_url) as (url, engine):
        with engine.begin() as conn:
            user = add_user(conn, remaining=5_000_000 - 700, used=3_000 + 700)
            add_usage(conn, user, tokens=100_000, action="admin_grant", model=None, seconds=0)
            add_usage(conn, user, tokens=3_000, seconds=10)
            add_usage(
                conn, user, tokens=5_000_000, action="subscription_grant", model="subscription", seconds=20
            )
            add_usage(conn, user, tokens=700, seconds=30)
        service = TokensService(settings_for(url, tokens_reset_actions=["subscription_grant"]), engine)
        report = service.reconcile("UADMIN1", user)
    b = report.balance
    assert (b.calculated_used, b.counted_used, b.expected_remaining) == (3_700, 700, 5_000_000 - 700)
    assert report.needs_correction is False
    shown = reply_text(render_reconcile(report).as_kwargs())
    assert "5,000,000 + 0 grants − 700 used since the reset − 0 deductions" in shown
