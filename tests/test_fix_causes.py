"""From finding to verified fix, one cause at a time, on crafted ledgers in a real PostgreSQL: the check
recommends the fix on the side that is wrong, and the fix proposed from the check, approved by a second
person and applied leaves the user reconciled, having only inserted ledger rows."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from core.domain.errors import InvalidAdjustmentError, ProductDataError
from core.domain.fix_batches import RECONCILED, ItemState
from core.domain.fix_plans import BACKFILL_USAGE_ACTION
from core.domain.fixes import Cause, FixKind, WrongSide
from core.domain.models import Verdict
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.cause_ledgers import (
    CASES,
    GRANT,
    NEVER,
    before_tracking,
    duplicated_grant,
    duplicated_usage,
    failed_charged,
    load_fixable,
    unlogged_grant,
)
from tests.support.databases import SCHEMA
from tests.support.fix_data import narrow_row, narrow_user
from tests.support.fixes import (
    ASKER,
    dump_of,
    inserted_only,
    item_rows,
    propose_and_apply,
    recommended,
)
from tests.support.ledger import add_usage, add_user
from tests.support.product_variants import VARIANTS, Variant, variant_database
from tests.test_odd_products_core import NARROW_PRODUCT, product, settings_for


@pytest.fixture
def service(settings: Settings, engine: Engine) -> TokensService:
    return TokensService(settings.model_copy(update={"tokens_approvals_channel": "CAPPROVALS"}), engine)


def profile_of(engine: Engine, user: str) -> tuple[int, int, Decimal]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT vibe_assistant_tokens_remaining, vibe_assistant_tokens_used, vibe_assistant_total_cost"
                " FROM user_profiles WHERE user_id = :u"
            ),
            {"u": user},
        ).one()
    return int(row[0]), int(row[1]), row[2]


@pytest.mark.parametrize(
    ("cause", "craft", "kind", "side", "new_rows"),
    CASES,
    ids=[f"{c[0].value}-{c[1].__name__}" for c in CASES],
)
def test_the_recommended_fix_for_each_cause_leaves_the_user_reconciled_by_inserting_rows_only(
    service: TokensService,
    engine: Engine,
    cause: Cause,
    craft: Callable[[Connection, int], str],
    kind: FixKind,
    side: WrongSide,
    new_rows: int,
) -> None:
    with engine.begin() as conn:
        user = craft(conn, 2_500)
    check = service.check("UADMIN1", user)
    assert check.verdict is not Verdict.RECONCILED
    option = recommended(service, user)
    assert option is not None and (option.cause, option.kind, option.side) == (cause, kind, side)
    assert not {o.side for o in check.fixes} & NEVER[cause]
    profile_before = profile_of(engine, user)
    before = dump_of(engine, [user])

    request_id, progress = propose_and_apply(service, user, cause)

    assert (progress.total, progress.applied, progress.reconciled, progress.pending) == (1, 1, 1, 0)
    assert progress.problems == ()
    after = service.check("UADMIN1", user)
    assert after.verdict is Verdict.RECONCILED and after.findings == [] and after.fixes == []
    # A reversal's negative tokens are the bot's own, on purpose: no data-quality note about them.
    assert after.data_quality == check.data_quality
    new = inserted_only(before, dump_of(engine, [user]))
    assert len(new) == new_rows
    [item] = item_rows(engine, SCHEMA, request_id)
    assert (item.state, item.verified, item.verification) == (ItemState.APPLIED.value, True, RECONCILED)
    assert set(item.ledger_row_ids or []) == new
    if side is not WrongSide.PROFILE:
        # Only a profile correction sets used and cost; the others leave them as the product wrote them.
        assert profile_of(engine, user)[1:] == profile_before[1:]


def test_the_rows_each_ledger_fix_writes(service: TokensService, engine: Engine) -> None:
    """Reversals negate the duplicate (or deduct a repeated grant) and name it; backfills say so; all name the cause."""
    with engine.begin() as conn:
        usage = duplicated_usage(conn, 3_000)
        grants = duplicated_grant(conn, 50_000)
        unlogged = unlogged_grant(conn, 40_000)
        untracked = before_tracking(conn, 37_000)
    written = {}
    for user, cause in [
        (usage, Cause.DUPLICATES),
        (grants, Cause.DUPLICATES),
        (unlogged, Cause.UNLOGGED_GRANT),
        (untracked, Cause.BEFORE_TRACKING),
    ]:
        before = dump_of(engine, [user])
        request_id, _ = propose_and_apply(service, user, cause)
        [row_id] = inserted_only(before, dump_of(engine, [user]))
        with engine.connect() as conn:
            written[user] = conn.execute(
                text(
                    "SELECT action_type, model_used, tokens_used, cost_estimate, success, metadata"
                    " FROM token_usage WHERE id::text = :id"
                ),
                {"id": row_id},
            ).one()
        assert written[user].metadata["fix"] == cause.value
        assert written[user].metadata["request_id"] == request_id
        assert written[user].success is not False
    with engine.connect() as conn:
        [twin] = conn.execute(
            text(
                "SELECT id::text FROM token_usage WHERE user_id = :u AND action_type = 'chat_conversation'"
                " AND tokens_used > 0 ORDER BY created_at DESC LIMIT 1"
            ),
            {"u": usage},
        ).scalars()
        [second_grant] = conn.execute(
            text(
                "SELECT id::text FROM token_usage WHERE user_id = :u AND action_type = 'admin_grant'"
                " ORDER BY created_at DESC LIMIT 1"
            ),
            {"u": grants},
        ).scalars()
    reversal = written[usage]
    assert (reversal.action_type, reversal.model_used, reversal.tokens_used) == (
        "chat_conversation",
        "gpt-4o",
        -3_000,
    )
    assert reversal.cost_estimate == Decimal("-2") and reversal.metadata["reverses"] == twin
    deduction = written[grants]
    assert (deduction.action_type, deduction.tokens_used) == ("admin_deduct", 50_000)
    assert deduction.metadata["reverses"] == second_grant
    backfilled = written[unlogged]
    assert (backfilled.action_type, backfilled.tokens_used, backfilled.metadata["backfill"]) == (
        "admin_grant",
        40_000,
        True,
    )
    usage_backfill = written[untracked]
    assert (usage_backfill.action_type, usage_backfill.tokens_used) == (BACKFILL_USAGE_ACTION, 37_000)
    assert usage_backfill.cost_estimate == Decimal("37") and usage_backfill.metadata["backfill"] is True


def test_where_no_fix_is_offered_the_check_says_why_and_a_proposal_is_refused(
    service: TokensService, engine: Engine
) -> None:
    """Duplicates the profile also charged, untracked usage the balance never lost, cost drift, and a
    failure that explains only part of the gap get no button, a reason, and a refused proposal."""
    with engine.begin() as conn:
        charged_twice = add_user(conn, remaining=GRANT - 1_400, used=1_400)
        add_usage(conn, charged_twice, tokens=GRANT, action="admin_grant", model=None)
        for second in (100, 101):
            add_usage(conn, charged_twice, tokens=700, input_tokens=300, output_tokens=400, seconds=second)
        never_lost = add_user(conn, remaining=GRANT, used=50_000)
        add_usage(conn, never_lost, tokens=GRANT, action="admin_grant", model=None)
        drift = add_user(conn, remaining=GRANT - 10_000, used=10_000, cost="0.50")
        add_usage(conn, drift, tokens=GRANT, action="admin_grant", model=None)
        add_usage(
            conn,
            drift,
            tokens=10_000,
            model="gpt-4",
            input_tokens=5_000,
            output_tokens=5_000,
            cost_cents="50",
        )
        partly = failed_charged(conn, 1_000)
        conn.execute(
            text(
                "UPDATE user_profiles SET vibe_assistant_tokens_used = vibe_assistant_tokens_used + 3000,"
                " vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining - 3000 WHERE user_id = :u"
            ),
            {"u": partly},
        )
    for user, cause, why in [
        (charged_twice, Cause.DUPLICATES, "charged them too"),
        (never_lost, Cause.BEFORE_TRACKING, "would not reconcile"),
        (drift, Cause.COST_DRIFT, "price"),
        (partly, Cause.FAILED_CHARGED, "this cause does not explain"),
    ]:
        check = service.check("UADMIN1", user)
        assert [o for o in check.fixes if o.cause is cause] == []
        [refusal] = [u for u in check.unfixable if u.cause is cause]
        assert why in refusal.why
        assert check.snapshot is not None
        before = dump_of(engine, [user])
        with pytest.raises(InvalidAdjustmentError, match=why):
            service.propose_fix(ASKER, user, cause, check.snapshot)
        assert dump_of(engine, [user]) == before


def test_a_fix_the_products_constraints_refuse_is_refused_at_proposal_never_half_applied(
    server_url: str,
) -> None:
    """On a product whose CHECK list lacks the deduction and backfill action types, with integer cents
    and bigint ids: the reversal of a repeated grant and a usage backfill are refused when proposed, with
    the database's reason; the duplicate usage reversal (its own action type) is proposed and applied."""
    with product(server_url, NARROW_PRODUCT) as (url, engine):
        with engine.begin() as conn:
            grants = narrow_user(conn, remaining=GRANT + 20_000, used=0)
            for second in (0, 600, 601):
                narrow_row(conn, grants, "admin_grant", GRANT if second == 0 else 20_000, second)
            untracked = narrow_user(conn, remaining=GRANT - 9_000, used=9_000)
            narrow_row(conn, untracked, "admin_grant", GRANT, 0)
            twice = narrow_user(conn, remaining=GRANT - 800, used=800, cost="0.03")
            narrow_row(conn, twice, "admin_grant", GRANT, 0)
            narrow_row(conn, twice, "chat", 800, 50, cents=3)
            narrow_row(conn, twice, "chat", 800, 51, cents=3)
        service = TokensService(settings_for(url), engine)
        for user, cause in [(grants, Cause.DUPLICATES), (untracked, Cause.BEFORE_TRACKING)]:
            check = service.check("UADMIN1", user)
            assert check.snapshot is not None and recommended(service, user) is not None
            before = dump_of(engine, [user])
            with pytest.raises(ProductDataError, match="CHECK constraint"):
                service.propose_fix(ASKER, user, cause, check.snapshot)
            assert dump_of(engine, [user]) == before
        before = dump_of(engine, [twice])
        _, progress = propose_and_apply(service, twice, Cause.DUPLICATES)
        assert (progress.applied, progress.reconciled) == (1, 1)
        [new] = inserted_only(before, dump_of(engine, [twice]))
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT action_type, tokens_used, cost_estimate FROM token_usage WHERE id::text = :id"),
                {"id": new},
            ).one()
        assert tuple(row) == ("chat", -800, -3)
        with engine.connect() as conn:
            requests = conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.approval_requests")).scalar_one()
        assert requests == 1


CRAFTS = [c[1] for c in CASES]


@given(craft=st.sampled_from(CRAFTS), tokens=st.integers(1, 60_000))
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_whenever_a_fix_is_offered_applying_it_reconciles_the_user(
    service: TokensService, engine: Engine, craft: Callable[[Connection, int], str], tokens: int
) -> None:
    """Random amounts for each injected cause: any fix the check offers leaves the user reconciled."""
    with engine.begin() as conn:
        user = craft(conn, tokens)
    option = recommended(service, user)
    if option is None:
        assert service.check("UADMIN1", user).unfixable
        return
    assert not {option.side} & NEVER[option.cause]
    before = dump_of(engine, [user])
    _, progress = propose_and_apply(service, user, option.cause)
    assert (progress.applied, progress.reconciled) == (1, 1)
    assert service.check("UADMIN1", user).verdict is Verdict.RECONCILED
    inserted_only(before, dump_of(engine, [user]))


@pytest.mark.parametrize(
    "variant",
    [v for v in VARIANTS if v.name in ("identity_text_users_view", "text_ids_numeric_tokens")],
    ids=lambda v: v.name,
)
def test_fixes_on_product_schemas_unlike_the_guides(server_url: str, variant: Variant) -> None:
    """Text user ids, identity or text row ids without defaults, integer cents, JSON or text metadata,
    profiles behind a view: each cause's fix is written in the product's own types and reconciles."""
    with variant_database(server_url, variant, load_fixable) as url:
        engine = make_engine(url, pool_size=2)
        try:
            service = TokensService(settings_for(url), engine)
            for user, cause in [
                ("fix-failed", Cause.FAILED_CHARGED),
                ("fix-twice", Cause.DUPLICATES),
                ("fix-unlogged", Cause.UNLOGGED_GRANT),
            ]:
                option = recommended(service, user)
                assert option is not None and option.cause is cause, service.check("UADMIN1", user).findings
                before = dump_of(engine, [user])
                _, progress = propose_and_apply(service, user, cause)
                assert (progress.applied, progress.reconciled) == (1, 1), progress.problems
                assert service.check("UADMIN1", user).verdict is Verdict.RECONCILED
                inserted_only(before, dump_of(engine, [user]))
        finally:
            engine.dispose()
