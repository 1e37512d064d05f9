"""The reconciliation core on crafted ledgers in a real PostgreSQL: balances, grants, findings, paging."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine

from core.domain.approvals import Person
from core.domain.errors import EmailLookupUnavailableError, NotAllowedError, UserNotFoundError
from core.domain.models import FindingKind, GrantSource, Verdict
from core.services.service import TokensService
from core.settings import Settings
from tests.support.ledger import add_usage, add_user


@pytest.fixture
def service(settings: Settings, engine: Engine) -> TokensService:
    return TokensService(settings, engine)


def findings_by_kind(report: object) -> dict[FindingKind, int]:
    return {f.kind: f.tokens for f in report.findings}  # type: ignore[attr-defined]


def test_clean_user_reconciles_with_first_admin_grant_as_initial_grant(
    service: TokensService, engine: Engine
) -> None:
    """A consistent ledger reconciles; the first admin_grant is the initial grant and is not counted twice."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000 - 3_000 + 10_000, used=3_000, cost="0.03")
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None, seconds=0)
        add_usage(conn, user, tokens=1_000, cost_cents="1.25", seconds=10)
        add_usage(conn, user, tokens=2_000, cost_cents="1.75", seconds=20)
        add_usage(conn, user, tokens=10_000, action="admin_grant", model=None, seconds=30)
    report = service.check("UADMIN1", user)
    b = report.balance
    assert b.initial_grant.source is GrantSource.FIRST_ADMIN_GRANT
    assert (b.initial_grant.tokens, b.admin_grants, b.admin_deductions) == (600_000, 10_000, 0)
    assert (b.calculated_used, b.expected_remaining) == (3_000, 607_000)
    assert b.calculated_cost == Decimal("0.03")
    assert (b.used_discrepancy, b.remaining_discrepancy, b.cost_discrepancy) == (0, 0, 0)
    assert report.verdict is Verdict.RECONCILED
    assert report.findings == []


def test_explicit_grant_wins_over_tier_and_tier_over_ledger(service: TokensService, engine: Engine) -> None:
    """An operator's initial grant beats the tier, which beats the first admin_grant; each assumption is named."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=5_000_000 - 500, used=500, tier="annual")
        add_usage(conn, user, tokens=500, seconds=1)
    by_tier = service.check("UADMIN1", user)
    assert by_tier.balance.initial_grant.source is GrantSource.TIER
    assert by_tier.balance.expected_remaining == 5_000_000 - 500
    assert "annual" in by_tier.balance.initial_grant.description
    explicit = service.check("UADMIN1", user, initial_grant=1_000_000)
    assert explicit.balance.initial_grant.source is GrantSource.EXPLICIT
    assert explicit.balance.expected_remaining == 1_000_000 - 500
    assert explicit.balance.remaining_discrepancy == 4_000_000
    assert explicit.verdict is Verdict.PROBLEM


def test_failed_operations_charged_are_found_with_their_tokens(
    service: TokensService, engine: Engine
) -> None:
    """Failed rows never count as used; when the profile charged them the finding shows exactly those tokens."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=1_000_000 - 4_000 - 2_500, used=4_000 + 2_500, tier="annual")
        add_usage(conn, user, tokens=4_000, seconds=1)
        add_usage(conn, user, tokens=1_500, success=False, error="model timeout", seconds=60)
        add_usage(conn, user, tokens=1_000, success=False, error="rate limited", seconds=120)
    report = service.check("UADMIN1", user, initial_grant=1_000_000)
    assert report.balance.calculated_used == 4_000
    assert report.balance.used_discrepancy == 2_500
    assert report.balance.remaining_discrepancy == -2_500
    assert findings_by_kind(report) == {FindingKind.FAILED_CHARGED: 2_500}
    assert report.verdict is Verdict.PROBLEM
    failed = [op for op in report.operations if not op.success]
    assert {op.error_message for op in failed} == {"model timeout", "rate limited"}


def test_duplicates_by_time_window_and_by_request_id(service: TokensService, engine: Engine) -> None:
    """Twins seconds apart and a repeated request id are duplicates; the same twin an hour later is not."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=0, used=0)
        add_usage(conn, user, tokens=700, input_tokens=500, output_tokens=200, seconds=0)
        add_usage(conn, user, tokens=700, input_tokens=500, output_tokens=200, seconds=2)
        add_usage(conn, user, tokens=700, input_tokens=500, output_tokens=200, seconds=3_600)
        add_usage(conn, user, tokens=300, metadata={"request_id": "req-1"}, seconds=100)
        add_usage(conn, user, tokens=301, metadata={"request_id": "req-1"}, seconds=900)
    report = service.check("UADMIN1", user)
    duplicates = next(f for f in report.findings if f.kind is FindingKind.DUPLICATES)
    assert (duplicates.rows, duplicates.tokens) == (2, 700 + 301)


def test_unlogged_grant_before_tracking_and_negative_balance(service: TokensService, engine: Engine) -> None:
    """A gap of exactly a tier grant, used tokens with no ledger, and a negative balance are each found."""
    with engine.begin() as conn:
        unlogged = add_user(conn, remaining=600_000 - 900, used=900)
        add_usage(conn, unlogged, tokens=900, seconds=1)
        untracked = add_user(conn, remaining=4_000_000, used=1_000_000, tier="annual")
        negative = add_user(conn, remaining=-2_345, used=602_345, tier="monthly")
        add_usage(conn, negative, tokens=602_345, seconds=1)
    assert findings_by_kind(service.check("UADMIN1", unlogged)) == {FindingKind.UNLOGGED_GRANT: 600_000}
    untracked_report = service.check("UADMIN1", untracked)
    assert findings_by_kind(untracked_report) == {FindingKind.USAGE_BEFORE_TRACKING: 1_000_000}
    assert untracked_report.balance.ledger_rows == 0
    assert untracked_report.operations == []
    negative_report = service.check("UADMIN1", negative)
    assert findings_by_kind(negative_report) == {FindingKind.NEGATIVE_BALANCE: 2_345}
    assert negative_report.verdict is Verdict.PROBLEM


def test_cost_drift_against_the_price_table_and_cost_compared_at_column_precision(
    service: TokensService, engine: Engine
) -> None:
    """Rows priced off the table are drift; cents/100 is rounded to the dollars column's two places."""
    # gpt-4o: 0.25 ¢ per 1k input, 1 ¢ per 1k output.
    with engine.begin() as conn:
        user = add_user(conn, remaining=-3_000, used=3_000, cost="0.02")
        add_usage(
            conn, user, tokens=1_000, input_tokens=600, output_tokens=400, cost_cents="0.5500", seconds=1
        )
        add_usage(
            conn, user, tokens=2_000, input_tokens=1_000, output_tokens=1_000, cost_cents="1.2500", seconds=9
        )
        add_usage(
            conn,
            user,
            tokens=2_000,
            input_tokens=1_000,
            output_tokens=1_000,
            cost_cents="0",
            seconds=99,
            success=False,
        )
    report = service.check("UADMIN1", user)
    assert report.balance.calculated_cost == Decimal("0.02")  # 1.8 cents -> $0.018 -> $0.02
    assert report.balance.cost_discrepancy == 0
    assert FindingKind.COST_DRIFT not in findings_by_kind(report)
    with engine.begin() as conn:
        add_usage(
            conn, user, tokens=1_000, input_tokens=600, output_tokens=400, cost_cents="3.0000", seconds=200
        )
    drift = next(f for f in service.check("UADMIN1", user).findings if f.kind is FindingKind.COST_DRIFT)
    assert (drift.rows, drift.tokens) == (1, 1_000)
    assert "$+0.02" in drift.summary  # 3.00 - 0.55 = 2.45 cents


def test_breakdown_and_recent_operations_are_paged_newest_first(
    service: TokensService, engine: Engine, settings: Settings
) -> None:
    """Breakdown groups by action and model; only the last 50 operations are shown, a page at a time."""
    with engine.begin() as conn:
        user = add_user(conn)
        for i in range(63):
            add_usage(
                conn,
                user,
                tokens=10 + i,
                action="chat_conversation" if i % 3 else "image_generation",
                model="gpt-4o" if i % 3 else "dall-e-3",
                seconds=i,
            )
    first = service.check("UADMIN1", user)
    assert (first.page.number, first.page.count, first.operations_total) == (1, 5, 63)
    assert [op.tokens_used for op in first.operations] == list(range(72, 62, -1))
    last = service.check("UADMIN1", user, page=5)
    assert [op.tokens_used for op in last.operations] == list(range(32, 22, -1))
    assert service.check("UADMIN1", user, page=99).page.number == 5
    rows = {(r.action_type, r.model_used): r for r in first.breakdown}
    assert rows[("chat_conversation", "gpt-4o")].operations == 42
    assert rows[("image_generation", "dall-e-3")].operations == 21
    assert rows[("image_generation", "dall-e-3")].tokens == sum(10 + i for i in range(0, 63, 3))


def test_lookup_by_email_and_the_errors_users_can_cause(
    service: TokensService, engine: Engine, settings: Settings
) -> None:
    """Email lookup ignores case; unknown ids, unknown emails and profile-less ledgers are explained."""
    import uuid

    with engine.begin() as conn:
        user = add_user(conn, email="Grace.Hopper@Example.com")
        orphan = uuid.uuid4()
        add_usage(conn, orphan, tokens=5)
    assert service.check("UADMIN1", "grace.hopper@example.com").user.user_id == user
    with pytest.raises(UserNotFoundError, match="No user with email"):
        service.check("UADMIN1", "nobody@example.com")
    with pytest.raises(UserNotFoundError, match="No user with id"):
        service.check("UADMIN1", uuid.uuid4())
    with pytest.raises(UserNotFoundError, match="1 ledger rows but no user_profiles row"):
        service.check("UADMIN1", orphan)
    with pytest.raises(NotAllowedError):
        service.check("USTRANGER", user)
    without_emails = TokensService(
        settings.model_copy(update={"tokens_email_source": "nowhere.users.email"}), engine
    )
    with pytest.raises(EmailLookupUnavailableError, match="Use the user's UUID"):
        without_emails.check("UADMIN1", "grace.hopper@example.com")
    assert without_emails.check("UVIEWER", user).user.email is None


def test_a_logged_tier_grant_is_never_counted_twice_wherever_it_stands(
    service: TokensService, engine: Engine
) -> None:
    """With a known tier, the logged admin_grant of the tier amount is the initial grant, even when not first."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=600_000 + 25_000 - 1_000, used=1_000, tier="monthly")
        add_usage(conn, user, tokens=25_000, action="admin_grant", model=None, seconds=0)
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None, seconds=10)
        add_usage(conn, user, tokens=1_000, seconds=20)
    report = service.check("UADMIN1", user)
    assert report.balance.initial_grant.logged
    assert (report.balance.admin_grants, report.balance.expected_remaining) == (25_000, 624_000)
    assert report.verdict is Verdict.RECONCILED


def test_an_approved_grant_of_the_tier_amount_is_an_extra_grant_not_the_initial_one(
    settings: Settings, engine: Engine
) -> None:
    """A +600,000 tokens-bot applied to a monthly user whose first cycle was never logged still reconciles."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=500_000, used=100_000, tier="monthly")
        add_usage(conn, user, tokens=100_000)
    service = TokensService(settings.model_copy(update={"tokens_approvals_channel": "CAPPROVALS"}), engine)
    asker = Person(slack_id="UADMIN1", name="Ada", email="ada@staff.example")
    approver = Person(slack_id="UADMIN2", name="Bea", email="bea@staff.example")
    request = service.request_adjustment(asker, user, 600_000, "second monthly cycle")
    assert service.approve(approver, request.id).request.balance_after == 1_100_000
    report = service.check("UADMIN1", user)
    b = report.balance
    assert (b.initial_grant.source, b.initial_grant.tokens, b.initial_grant.logged) == (
        GrantSource.TIER,
        600_000,
        False,
    )
    assert (b.admin_grants, b.expected_remaining, b.remaining_discrepancy) == (600_000, 1_100_000, 0)
    assert report.findings == [] and report.verdict is Verdict.RECONCILED
    assert not service.reconcile("UADMIN1", user).needs_correction


def test_findings_without_a_balance_gap_still_make_the_verdict(
    service: TokensService, engine: Engine
) -> None:
    """Duplicates the profile also counted leave no gap, yet the check must not call the user reconciled."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=10_000 - 2_000, used=2_000)
        add_usage(conn, user, tokens=10_000, action="admin_grant", model=None, seconds=-60)
        add_usage(conn, user, tokens=1_000, seconds=0)
        add_usage(conn, user, tokens=1_000, seconds=1)
    report = service.check("UADMIN1", user)
    assert (report.balance.used_discrepancy, report.balance.remaining_discrepancy) == (0, 0)
    assert [f.kind for f in report.findings] == [FindingKind.DUPLICATES]
    assert report.verdict is Verdict.MINOR
