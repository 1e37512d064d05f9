"""The fleet list's two cheap parts: the score that picks the discrepant users is the judged scan's, and the
finding signals kept at a fold group the list until a user's rows change, while the page stays current."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from bot.render.fleet import render_discrepancies
from bot.render.text import blocks_as_text
from bot.scheduler import fold_recent, keep_signals
from core.domain.fixes import Cause, primary_cause
from core.domain.rollups import LedgerRead
from core.services.service import TokensService
from core.services.signal_refresh import keep_largest_signals
from core.settings import Settings
from core.store.catalog import inspect_product
from core.store.columns import Columns
from core.store.db import make_engine, unit_of_work
from core.store.discrepancies import discrepant_users, scan_params, scan_statement
from core.store.rollup_state import rollups_table
from core.store.scan import discrepancy_cte, scored_cte
from core.store.tiers import load_tiers
from tests.support.databases import scratch_database
from tests.support.fleet_data import craft_fleet
from tests.support.ledger import add_usage
from tests.support.replica import add_rows_of_every_kind
from tests.test_rollups import BRIN, fold, foldable_replica, rollup_settings


@pytest.fixture
def fleet(server_url: str) -> Iterator[tuple[Engine, Settings, dict[str, str]]]:
    with scratch_database(server_url, "tokens_scan_signals") as url:
        engine = make_engine(url, pool_size=3)
        with engine.begin() as conn:
            users = craft_fleet(conn)
            conn.execute(text(BRIN))
        yield engine, rollup_settings(url), users
        engine.dispose()


def scores(engine: Engine, settings: Settings, *, folded: bool, minimum: int) -> tuple[Any, Any]:
    """Every user over `minimum` as (worst, deferred), from `scored` and from the judged scan's `flagged`."""
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        shape = inspect_product(conn, settings)
        cols, tiers = Columns.of(shape, settings), load_tiers(conn, shape, settings)
        rollups = rollups_table(settings) if folded else None
        watermark = conn.execute(
            text(f'SELECT max(watermark) FROM "{settings.tokens_schema}".rollup_state')
        ).scalar_one()
        params = scan_params(settings, tiers, minimum, LedgerRead(folded_to=watermark))
        found = []
        both = (
            (scored_cte(cols, tiers, rollups=rollups), "scored"),
            (discrepancy_cte(cols, tiers, rollups=rollups), "flagged"),
        )
        for cte, table in both:
            sql = scan_statement(f"WITH {cte} SELECT user_id, worst, deferred FROM {table}")
            found.append({row.user_id: (row.worst, row.deferred) for row in conn.execute(sql, params)})
        return found[0], found[1]


def test_the_score_picks_exactly_the_users_and_worst_discrepancies_the_judged_scan_flags(
    server_url: str,
) -> None:
    """Resets, tier amounts logged or not, first grants, cents: over the whole ledger and over folded totals
    with rows since, the cheap score and the judged balances agree user for user."""
    with foldable_replica(server_url) as (engine, settings, users):
        for minimum in (0, 100):
            scored, flagged = scores(engine, settings, folded=False, minimum=minimum)
            assert scored == flagged and scored
        fold(engine, settings, full=True)
        with engine.begin() as conn:
            add_rows_of_every_kind(conn, users, datetime.now(UTC) + timedelta(seconds=1))
        scored, flagged = scores(engine, settings, folded=True, minimum=0)
        assert scored == flagged and scored


def twin_rows(engine: Engine, user: str, tokens: int) -> None:
    """A usage row logged twice a second apart, after the last fold: a duplicate the profile never charged."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for at in (now, now + timedelta(seconds=1)):
            add_usage(conn, user, tokens=tokens, at=at)


def causes(service: TokensService) -> dict[Cause, int]:
    report = service.discrepancies("UADMIN1", 0)
    return {group.cause: group.users for group in report.causes}


def test_kept_signals_group_the_list_until_rows_change_while_the_page_and_batches_stay_current(
    fleet: tuple[Engine, Settings, dict[str, str]],
) -> None:
    engine, settings, users = fleet
    service = TokensService(settings, engine)
    fold(engine, settings, full=True)
    before = causes(service)
    first = keep_largest_signals(engine, engine, settings)
    assert first.counted > 0 and first.reused == 0
    assert causes(service) == before
    again = keep_largest_signals(engine, engine, settings)
    assert (again.counted, again.reused, again.forgotten) == (0, first.counted, 0)

    # The failed-charged user now also has a larger duplicate, written after the fold.
    failed = users["failed"]
    twin_rows(engine, failed, 40_000)
    report = service.discrepancies("UADMIN1", 0)
    assert report.older_causes == 1
    # Grouped by its current balance and the signals kept at the fold, which know of no duplicate yet.
    assert {g.cause: g.users for g in report.causes}.get(Cause.DUPLICATES, 0) == before.get(
        Cause.DUPLICATES, 0
    )
    row = next(r for r in report.rows if r.user.user_id == failed)
    assert primary_cause(row.findings) is Cause.DUPLICATES
    text_of_list, _ = blocks_as_text(render_discrepancies(report).as_kwargs()["blocks"])
    assert "the causes of 1 user are from their rows at the last fold" in text_of_list
    with unit_of_work(engine, read_only=True, isolation="REPEATABLE READ") as conn:
        shape = inspect_product(conn, settings)
        current = discrepant_users(conn, shape, settings, minimum=100, window=100, current=True)
    assert (
        primary_cause(next(r for r in current.rows if r.user.user_id == failed).findings) is Cause.DUPLICATES
    )
    assert set(current.counted) == {failed} and not current.older

    # The scheduler's next fold counts the changed user again; the list is grouped by it at once.
    assert fold_recent(service) is not None
    kept = keep_signals(service)
    assert kept is not None and kept.counted == 1
    after = service.discrepancies("UADMIN1", 0)
    assert after.older_causes == 0
    assert {g.cause: g.users for g in after.causes}.get(Cause.DUPLICATES, 0) == before.get(
        Cause.DUPLICATES, 0
    ) + 1


def test_signals_kept_under_other_settings_are_counted_again(
    fleet: tuple[Engine, Settings, dict[str, str]],
) -> None:
    engine, settings, _ = fleet
    fold(engine, settings, full=True)
    kept = keep_largest_signals(engine, engine, settings)
    other = settings.model_copy(update={"tokens_duplicate_window_seconds": 3_600})
    with unit_of_work(engine, read_only=True, isolation="REPEATABLE READ") as conn:
        found = discrepant_users(
            conn, inspect_product(conn, other), other, minimum=100, window=100, current=False
        )
    assert len(found.counted) == kept.counted and not found.older
    recounted = keep_largest_signals(engine, engine, settings, recount=True)
    assert (recounted.counted, recounted.reused) == (kept.counted, 0)


def test_the_fleet_scan_can_run_in_parallel_over_folded_totals_and_rows_since(
    fleet: tuple[Engine, Settings, dict[str, str]],
) -> None:
    """Every profile is read once per scan: at 600,000 users that is most of `/tokens discrepancies`, so
    its workers must be able to share it. A full join, a subquery per row or an `OFFSET 0` fence anywhere in
    the scan keeps PostgreSQL from planning it in parallel; with parallel plans made free, it must."""
    engine, settings, users = fleet
    with engine.begin() as conn:
        # A fleet large enough that a plan's shape is the one a real one gets, not a handful of rows'.
        conn.execute(
            text(
                "INSERT INTO user_profiles (user_id, vibe_assistant_tokens_remaining, vibe_assistant_tokens_used,"
                " vibe_assistant_total_cost) SELECT gen_random_uuid(), 0, 0, 0 FROM generate_series(1, 20000)"
            )
        )
        conn.execute(text("ANALYZE user_profiles"))
    fold(engine, settings, full=True)
    twin_rows(engine, users["failed"], 700)
    sent: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with unit_of_work(engine, read_only=True, isolation="REPEATABLE READ") as conn:
            shape = inspect_product(conn, settings)
            found = discrepant_users(conn, shape, settings, minimum=0, window=10, current=True)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert found.ledger.folded_to is not None and found.rows
    scan, params = next((s, p) for s, p in sent if "OVER ()" in s)
    with engine.connect() as conn:
        for name in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
            conn.exec_driver_sql(f"SET {name} = 0")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {scan}", params))
    for table in ("user_profiles", "ledger_rollups"):
        assert f"Parallel Seq Scan on {table}" in plan, plan
    assert "SubPlan" not in plan, plan
    # The workers drop the users within the minimum: the filter is under the Gather, not over it.
    assert plan.index("Gather") < plan.index("Filter: (GREATEST("), plan
