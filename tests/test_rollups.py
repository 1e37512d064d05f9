"""Folded ledger totals: a scan over them plus the rows since equals the full scan, late rows are caught,
and `tokens-bot rollup --verify` finds every difference."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from bot.entrypoints import jobs
from bot.render.fleet import render_discrepancies
from bot.render.text import blocks_as_text
from bot.scheduler import fold_recent
from core.domain.rollups import LedgerRead
from core.services.rollup import fold_ledger, verify_ledger
from core.services.service import TokensService
from core.settings import Settings
from core.store import rollup_state, rollups
from core.store.catalog import inspect_product
from core.store.columns import Columns
from core.store.db import make_engine
from core.store.discrepancies import scan_params, scan_statement
from core.store.doctor import diagnose_database
from core.store.rollup_state import ledger_read, rollups_table
from core.store.scan import discrepancy_cte
from core.store.tiers import load_tiers
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import scratch_database
from tests.support.fake_slack import FakeSlack
from tests.support.fleet_data import craft_fleet
from tests.support.ledger import add_usage, add_user
from tests.support.replica import CONFIG, add_rows_of_every_kind, replica_database, settings_from_env
from tests.support.replica_users import ReplicaUser
from tests.support.slack_http import SlackClient, ask, reply_text

BRIN = "CREATE INDEX IF NOT EXISTS token_usage_created_brin ON token_usage USING brin (created_at)"


def rollup_settings(url: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "tokens_admins": ["UADMIN1"],
        "tokens_rollup_lag_seconds": 0,
        "tokens_scan_grace_seconds": 0,
        "tokens_rollup_relook_every_minutes": 0,
        **overrides,
    }
    return Settings(_env_file=None, database_url=url, **fields)  # type: ignore[call-arg]


@pytest.fixture
def fleet(server_url: str) -> Iterator[tuple[Engine, Settings]]:
    with scratch_database(server_url, "tokens_rollups") as url:
        engine = make_engine(url, pool_size=3)
        with engine.begin() as conn:
            craft_fleet(conn)
            conn.execute(text(BRIN))
        yield engine, rollup_settings(url, tokens_reset_actions=["plan_reset"])
        engine.dispose()


def judged(engine: Engine, settings: Settings, *, folded: bool) -> dict[str, dict[str, Any]]:
    """Every user's `judged` row, from the folded totals plus the rows since, or from the whole ledger."""
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        shape = inspect_product(conn, settings)
        cols, tiers = Columns.of(shape, settings), load_tiers(conn, shape, settings)
        ledger = ledger_read(conn, cols, tiers, settings)
        assert ledger.folded_to is not None or not folded, ledger
        ledger = ledger if folded else LedgerRead(full_reason="compared")
        sql = f"WITH {discrepancy_cte(cols, tiers, rollups=rollups_table(settings) if folded else None)}"
        rows = conn.execute(
            scan_statement(f"{sql} SELECT * FROM judged"), scan_params(settings, tiers, 0, ledger)
        ).mappings()
        return {row["user_id"]: dict(row) for row in rows}


def assert_scan_is_the_full_scan(engine: Engine, settings: Settings) -> None:
    full = judged(engine, settings, folded=False)
    assert judged(engine, settings, folded=True) == full
    assert any(row["failed_tokens"] for row in full.values())


def fold(engine: Engine, settings: Settings, *, full: bool = False) -> Any:
    result = fold_ledger(engine, engine, settings, full=full)
    assert result.ran
    return result


def watermark(engine: Engine, settings: Settings) -> datetime:
    with engine.connect() as conn:
        return conn.execute(
            text(f'SELECT watermark FROM "{settings.tokens_schema}".rollup_state')
        ).scalar_one()


def assert_verified(engine: Engine, settings: Settings) -> None:
    checked = verify_ledger(engine, engine, settings)
    assert checked.watermark is not None
    assert checked.mismatches == []
    assert checked.users > 0


@contextmanager
def foldable_replica(server_url: str) -> Iterator[tuple[Engine, Settings, list[ReplicaUser]]]:
    """The VibrationFit replica with a created_at index, and settings that fold rows as soon as they are in."""
    with replica_database(server_url) as (url, users):
        settings = settings_from_env(
            url,
            CONFIG,
            tokens_rollup_lag_seconds=0,
            tokens_scan_grace_seconds=0,
            tokens_rollup_relook_every_minutes=0,
        )
        engine = make_engine(url, pool_size=3)
        try:
            with engine.begin() as conn:
                conn.execute(text(BRIN))
            yield engine, settings, users
        finally:
            engine.dispose()


def test_a_scan_of_folded_totals_equals_the_full_scan_on_a_product_with_resets_tiers_and_cents(
    server_url: str,
) -> None:
    """The VibrationFit replica (subscription resets, tier table, cents, failed and duplicate rows): totals
    folded once, then rows after the watermark (a new reset among them) read live, then folded too."""
    with foldable_replica(server_url) as (engine, settings, users):
        assert fold(engine, settings).full_reason == "first fold"
        assert_scan_is_the_full_scan(engine, settings)
        with engine.begin() as conn:
            add_rows_of_every_kind(conn, users, datetime.now(UTC) + timedelta(seconds=1))
        assert_scan_is_the_full_scan(engine, settings)
        assert fold(engine, settings).full is False
        assert_scan_is_the_full_scan(engine, settings)
        assert_verified(engine, settings)


def test_rows_inserted_late_are_caught(fleet: tuple[Engine, Settings]) -> None:
    """A transaction open across a fold (its row stamped with its start), rows backdated into folded hours
    and rows without a time: the watermark stays before the open transaction, and the next fold re-reads
    the users of the hours that gained rows. A row older than the re-counted hours waits for a full fold,
    and `--verify` names its user until then."""
    engine, settings = fleet
    late_user = add_user_with_grant(engine)
    fold(engine, settings)
    with engine.connect() as open_tx:
        open_tx.begin()
        started = open_tx.execute(text("SELECT now()")).scalar_one()
        add_usage(open_tx, late_user, tokens=700, at=started)
        result = fold(engine, settings)
        assert result.watermark is not None and result.watermark < started
        open_tx.commit()
    assert_scan_is_the_full_scan(engine, settings)
    assert_verified(engine, settings)

    folded_to = watermark(engine, settings)
    with engine.begin() as conn:
        add_usage(conn, late_user, tokens=900, at=folded_to - timedelta(hours=2))
        add_usage(conn, late_user, tokens=50, success=False, at=folded_to - timedelta(minutes=1))
        conn.execute(text("UPDATE token_usage SET created_at = NULL WHERE tokens_used = 50"))
    assert verify_ledger(engine, engine, settings).mismatches[0].user_id == late_user
    result = fold(engine, settings)
    assert (result.late_users, result.late_hours) == (1, 2)
    assert_verified(engine, settings)
    assert_scan_is_the_full_scan(engine, settings)

    with engine.begin() as conn:
        add_usage(conn, late_user, tokens=11, at=watermark(engine, settings) - timedelta(days=3))
    fold(engine, settings)
    (mismatch,) = verify_ledger(engine, engine, settings).mismatches
    assert mismatch.user_id == late_user
    assert mismatch.fields["calculated_used"][1] == str(int(mismatch.fields["calculated_used"][0]) + 11)
    fold(engine, settings, full=True)
    assert_verified(engine, settings)


def test_folds_between_two_relooks_leave_a_late_row_to_the_next_relook_which_catches_it(
    fleet: tuple[Engine, Settings],
) -> None:
    """With TOKENS_ROLLUP_RELOOK_EVERY_MINUTES=60 only one fold an hour recounts the relooked hours. The
    folds between record their hours from what they folded, so a row backdated into an hour they do not
    recount (and one into the hour they are folding) is still found, by the first fold an hour after the
    last recount; until then `--verify` names its user."""
    engine, settings = fleet
    settings = settings.model_copy(update={"tokens_rollup_relook_every_minutes": 60})
    user, other = add_user_with_grant(engine), add_user_with_grant(engine)
    assert fold(engine, settings).relooked
    folded_to = watermark(engine, settings)
    with engine.begin() as conn:
        add_usage(conn, user, tokens=900, at=folded_to - timedelta(hours=3))
        add_usage(conn, user, tokens=40, at=folded_to - timedelta(seconds=1))
        add_usage(conn, other, tokens=25, at=datetime.now(UTC))
    between = fold(engine, settings)
    assert (between.relooked, between.users, between.late_users) == (False, 1, 0)
    (mismatch,) = verify_ledger(engine, engine, settings).mismatches
    assert mismatch.user_id == user
    assert mismatch.fields["calculated_used"][1] == str(int(mismatch.fields["calculated_used"][0]) + 940)
    with engine.begin() as conn:
        add_usage(conn, other, tokens=5, at=datetime.now(UTC))
    assert fold(engine, settings).relooked is False
    with engine.begin() as conn:
        conn.execute(
            text(
                f'UPDATE "{settings.tokens_schema}".rollup_state'
                " SET relooked_to = relooked_to - interval '60 minutes'"
            )
        )
    relooked = fold(engine, settings)
    assert (relooked.relooked, relooked.late_hours) == (True, 2)
    assert_verified(engine, settings)
    assert_scan_is_the_full_scan(engine, settings)


def test_rows_committed_while_a_fold_reads_are_in_its_totals_or_caught_by_the_next_fold(
    fleet: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the primary's own database the sums are aggregated in a snapshot later than the one the hours
    are counted in: a row committed in between, into the slice being folded or into a folded hour, is in
    the totals or found by the next fold, and never counted twice."""
    engine, settings = fleet
    user = add_user_with_grant(engine)
    fold(engine, settings)
    add = rollups._add

    def insert_then_add(*args: Any, **kwargs: Any) -> int:
        params = args[2].params  # _add(primary, settings, slice_)
        with engine.begin() as conn:
            add_usage(conn, user, tokens=300, at=params["watermark"])
            add_usage(conn, user, tokens=40, at=params["previous"] - timedelta(minutes=5))
        return add(*args, **kwargs)

    with engine.begin() as conn:
        add_usage(conn, user, tokens=5, at=datetime.now(UTC))
    monkeypatch.setattr(rollups, "_add", insert_then_add)
    fold(engine, settings)
    monkeypatch.undo()
    (mismatch,) = verify_ledger(engine, engine, settings).mismatches
    assert mismatch.user_id == user
    assert mismatch.fields["calculated_used"][1] == str(int(mismatch.fields["calculated_used"][0]) + 40)
    assert fold(engine, settings).late_users == 1
    assert_verified(engine, settings)
    assert_scan_is_the_full_scan(engine, settings)


def test_from_a_standby_the_sums_stream_to_the_primary_and_late_rows_are_caught(
    fleet: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DATABASE_READ_URL on a standby the ledger is read there and the sums are copied to the primary
    through the bot (here a second engine on the same database, taken for a standby that has replayed)."""
    engine, settings = fleet
    monkeypatch.setattr(rollup_state, "is_standby", lambda conn: True)
    monkeypatch.setattr(rollup_state, "wait_for_replay", lambda conn, lsn, timeout: True)
    assert settings.database_url is not None
    standby = make_engine(settings.database_url, pool_size=2)
    try:
        user = add_user_with_grant(engine)
        assert fold_ledger(engine, standby, settings).full
        folded_to = watermark(engine, settings)
        with engine.begin() as conn:
            add_usage(conn, user, tokens=900, at=folded_to - timedelta(hours=2))
            add_usage(conn, user, tokens=25, at=datetime.now(UTC))
        result = fold_ledger(engine, standby, settings)
        assert (result.users, result.late_users) == (1, 1)
        assert verify_ledger(engine, standby, settings).mismatches == []
        assert_scan_is_the_full_scan(engine, settings)
    finally:
        standby.dispose()


def test_of_the_users_re_read_for_a_late_row_only_those_whose_sums_changed_are_written(
    fleet: tuple[Engine, Settings],
) -> None:
    """Every user with a row in an hour that gained one is re-read whole; the totals of those whose sums
    came out the same are left as they were (the same row version), not rewritten."""
    engine, settings = fleet
    late, unchanged = add_user_with_grant(engine), add_user_with_grant(engine)
    fold(engine, settings)
    hour_ago = watermark(engine, settings) - timedelta(hours=1)
    with engine.begin() as conn:
        for user in (late, unchanged):
            add_usage(conn, user, tokens=100, at=hour_ago)
    fold(engine, settings, full=True)
    versions = row_versions(engine, settings)
    with engine.begin() as conn:
        add_usage(conn, late, tokens=7, at=hour_ago + timedelta(seconds=1))
    result = fold(engine, settings)
    assert result.late_users == 2
    after = row_versions(engine, settings)
    assert after[unchanged] == versions[unchanged]
    assert after[late] != versions[late]
    assert_verified(engine, settings)


def row_versions(engine: Engine, settings: Settings) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT user_id, xmin::text AS version FROM {rollups_table(settings)}"))
        return {row.user_id: row.version for row in rows}


def add_user_with_grant(engine: Engine) -> str:
    with engine.begin() as conn:
        user = add_user(conn, remaining=10_000)
        add_usage(conn, user, tokens=10_000, action="admin_grant", model=None)
        return user


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_interleavings_of_inserts_late_inserts_and_folds_leave_no_mismatch(
    fleet: tuple[Engine, Settings], seed: int
) -> None:
    rng = random.Random(seed)
    engine, settings = fleet
    with engine.begin() as conn:
        users = [add_user(conn, remaining=rng.randrange(0, 50_000)) for _ in range(8)]
    actions = ["chat_conversation", "image_generation", "admin_grant", "admin_deduct", "plan_reset"]
    folded = False
    for _ in range(60):
        step = rng.random()
        if step < 0.15:
            fold(engine, settings)
            folded = True
            assert_verified(engine, settings)
            continue
        at: datetime | None = datetime.now(UTC)
        if folded and step < 0.45:
            at = watermark(engine, settings) - timedelta(minutes=rng.randrange(0, 60 * 20))
        elif step < 0.5:
            at = None
        with engine.begin() as conn:
            row = add_usage(
                conn,
                rng.choice(users),
                tokens=rng.randrange(0, 5_000),
                action=rng.choice(actions),
                success=rng.random() > 0.2,
                cost_cents=str(rng.randrange(0, 900)) + ".25",
            )
            conn.execute(
                text("UPDATE token_usage SET created_at = :at WHERE id = :id"), {"at": at, "id": row}
            )
    fold(engine, settings)
    assert_verified(engine, settings)
    assert_scan_is_the_full_scan(engine, settings)


def test_without_a_created_at_index_the_scan_reads_the_full_ledger_and_says_so(server_url: str) -> None:
    with scratch_database(server_url, "tokens_rollups_noindex") as url:
        engine = make_engine(url, pool_size=2)
        try:
            with engine.begin() as conn:
                craft_fleet(conn)
                conn.execute(text("DROP INDEX IF EXISTS token_usage_created_brin"))
            settings = rollup_settings(url)
            fold(engine, settings)
            report = TokensService(settings, engine).discrepancies("UADMIN1", 100)
            assert report.ledger.folded_to is None
            assert report.ledger.full_reason and "no index on created_at" in report.ledger.full_reason
            shown, _ = blocks_as_text(render_discrepancies(report).as_kwargs()["blocks"])
            assert "read the full ledger: token_usage has no index on created_at" in shown
            doctor = diagnose_database(engine, url, settings)
            (advice,) = [i for i in doctor.indexes if i.columns == ["created_at"]]
            assert advice.present is None
            assert "CREATE INDEX CONCURRENTLY" in advice.create_sql
            assert "USING brin (created_at)" in advice.create_sql
            with engine.begin() as conn:
                conn.execute(text(BRIN))
            report = TokensService(settings, engine).discrepancies("UADMIN1", 100)
            assert report.ledger == LedgerRead(folded_to=watermark(engine, settings))
            assert "full ledger" not in blocks_as_text(render_discrepancies(report).as_kwargs()["blocks"])[0]
        finally:
            engine.dispose()


def test_rollup_command_folds_then_verify_reports_every_mismatch(
    fleet: tuple[Engine, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, settings = fleet
    assert jobs.rollup(settings, full=False, verify=False) == 0
    assert "full fold (first fold)" in capsys.readouterr().out
    assert jobs.rollup(settings, full=False, verify=True) == 0
    assert ", 0 mismatches" in capsys.readouterr().out
    with engine.begin() as conn:
        tampered = bump_two_users(conn, settings)
    assert jobs.rollup(settings, full=False, verify=True) == 1
    out = capsys.readouterr().out
    for user in tampered:
        assert f"mismatch {user}: calculated_used: folded" in out
    assert ", 2 mismatches" in out
    assert jobs.rollup(settings, full=True, verify=False) == 0
    assert jobs.rollup(settings, full=False, verify=True) == 0


def bump_two_users(conn: Connection, settings: Settings) -> list[str]:
    return list(
        conn.execute(
            text(
                f"UPDATE {rollups_table(settings)} SET calculated_used = calculated_used + 1"
                f" WHERE user_id IN (SELECT user_id FROM {rollups_table(settings)} ORDER BY user_id LIMIT 2)"
                " RETURNING user_id"
            )
        ).scalars()
    )


def test_a_fold_reads_nothing_twice_when_run_again_at_once(fleet: tuple[Engine, Settings]) -> None:
    """Idempotent: folds in a row, with no new rows, change no total."""
    engine, settings = fleet
    fold(engine, settings)
    with engine.connect() as conn:
        before = conn.execute(text(f"SELECT * FROM {rollups_table(settings)} ORDER BY user_id")).all()
    for _ in range(3):
        assert fold(engine, settings).late_users == 0
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT * FROM {rollups_table(settings)} ORDER BY user_id")).all() == before
    assert uuid.UUID(before[0].user_id)


def test_over_http_the_list_is_the_same_before_and_after_the_first_fold_and_says_how_it_read(
    server_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Signed `/tokens discrepancies` into `tokens-bot serve`: before any fold it reads the full ledger and
    says so; after `tokens-bot rollup` the same users with the same numbers, from the folded totals."""
    with scratch_database(server_url, "tokens_rollups_http") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            craft_fleet(conn)
        engine.dispose()
        env = bot_env(url, fake_slack.api_url, TOKENS_PAGE_SIZE="25", TOKENS_RATE_LIMIT_PER_MINUTE="1000")
        process = BotProcess(env, tmp_path_factory.mktemp("rollup-bot") / "bot.log")
        try:
            slack = SlackClient(process.url, SIGNING_SECRET, fake_slack.url)
            before = reply_text(ask(slack, fake_slack, "discrepancies"))
            assert "read the full ledger: no ledger totals have been folded yet" in before
            assert jobs.rollup(rollup_settings(url), full=False, verify=False) == 0
            after = reply_text(ask(slack, fake_slack, "discrepancies"))
            assert "full ledger" not in after
            listed = [line for line in before.split("\\n") if "used *" in line]
            assert len(listed) > 3
            assert [line for line in after.split("\\n") if "used *" in line] == listed
        finally:
            process.stop()


def test_with_a_read_database_that_is_no_standby_the_fold_reads_the_primary_and_its_scans_read_their_ledger(
    fleet: tuple[Engine, Settings], server_url: str
) -> None:
    """Totals are only read where they were folded from: a read database that is not a standby of the
    primary has none, so its scans read its own whole ledger, and the fold reads the primary's."""
    engine, settings = fleet
    with scratch_database(server_url, "tokens_rollups_reader") as reader_url:
        reader = make_engine(reader_url, pool_size=1)
        try:
            result = fold_ledger(engine, reader, settings)
            assert result.ran and result.users > 5
            assert verify_ledger(engine, reader, settings).mismatches == []
            report = TokensService(settings, engine, read_engine=reader).discrepancies("UADMIN1", 0)
            assert report.total == 0
            assert report.ledger.full_reason == (
                "no ledger totals have been folded yet (`tokens-bot rollup` folds them)"
            )
        finally:
            reader.dispose()


def test_the_scheduler_folds_what_came_since_and_never_starts_a_full_fold(
    fleet: tuple[Engine, Settings],
) -> None:
    """The tick's fold: nothing before the first fold (that reads the whole ledger: `tokens-bot rollup`'s
    to run), then only the rows since the last one; the scan over the totals stays the full scan."""
    engine, settings = fleet
    service = TokensService(settings, engine)
    skipped = fold_recent(service)
    assert skipped is not None and not skipped.ran and skipped.full_reason == "first fold"
    fold(engine, settings)
    with engine.begin() as conn:
        user = add_user(conn, remaining=5_000)
        add_usage(conn, user, tokens=9_000, action="admin_grant", model=None, at=datetime.now(UTC))
    folded = fold_recent(service)
    assert folded is not None and folded.ran and not folded.full and folded.users == 1
    assert_scan_is_the_full_scan(engine, settings)
    assert_verified(engine, settings)
