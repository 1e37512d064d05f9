"""Benchmark of fleet scans over folded ledger totals, beside the raw full-scan SQL of the same work.

Run: `python -m tests.benchmarks.bench_rollups --url postgresql://postgres@127.0.0.1:5432/tokens_bench_30m`
after loading it with `python -m tests.benchmarks.data --users 600000 --rows 30000000` (and the same with
`--small-url` for a smaller ledger, to compare). The script changes the database it measures: it creates
the BRIN index on created_at, the bot's schema, folds the ledger, and appends rows (copies of existing
ones, stamped now) to measure scans and folds as the ledger grows; run it on a data set of its own.
A product's ledger is append-only, so on disk it is in time order, which is what lets a BRIN index find
recent rows; the generated one is written user by user, so the script first rewrites it in time order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine

from bot.routes import reply_to_command
from core.domain.rollups import FoldResult
from core.services.rollup import fold_ledger, verify_ledger
from core.services.service import TokensService
from core.services.signal_refresh import keep_largest_signals
from core.settings import Settings
from core.store import rollup_state
from core.store.db import make_engine, unit_of_work
from core.store.discrepancies import scan_ledger, stream_discrepancies
from core.store.migrate import migrate
from tests.benchmarks.bench_fleet import ACTOR, NO_SLACK, measure_memory, raw_discrepancies
from tests.benchmarks.data import describe, psql_url

BRIN = (
    "CREATE INDEX IF NOT EXISTS token_usage_created_brin ON public.token_usage USING brin (created_at)"
    " WITH (autosummarize = on)"
)
# What autosummarize has autovacuum do once a range fills (a benchmark server may run without autovacuum).
SUMMARIZE = "SELECT brin_summarize_new_values('public.token_usage_created_brin')"
APPEND = """
INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens, output_tokens,
                                cost_estimate, success, error_message, metadata, created_at)
SELECT gen_random_uuid(), user_id, action_type, model_used, tokens_used, input_tokens, output_tokens,
       cost_estimate, success, error_message, metadata, now()
FROM public.token_usage TABLESAMPLE SYSTEM (2) LIMIT %(n)s
"""
# The same work as an incremental fold in hand-written SQL: the new rows' sums per user, added to the
# totals in one upsert (fewer sums than the bot keeps; rolled back). With the fold's own session settings.
RAW_FOLD = """
WITH added AS (
    SELECT user_id::text AS user_id, count(*) AS ledger_rows,
           count(*) FILTER (WHERE NOT success) AS failed_rows,
           coalesce(sum(tokens_used) FILTER (WHERE NOT success AND action_type NOT LIKE 'admin%%'), 0) AS failed,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type NOT LIKE 'admin%%'), 0) AS used,
           coalesce(sum(cost_estimate) FILTER (WHERE success AND action_type NOT LIKE 'admin%%'), 0) AS cents,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_grant'), 0) AS grants,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_deduct'), 0) AS deducted
    FROM public.token_usage WHERE created_at > %(previous)s AND created_at <= %(watermark)s
    GROUP BY user_id
)
INSERT INTO {table} AS o (user_id, ledger_rows, failed_rows, failed_tokens, calculated_used, calculated_cents,
                          logged_amounts, has_reset, counted_used, all_grants, admin_deductions)
SELECT user_id, ledger_rows, failed_rows, failed, used, cents, '{{}}', false, used, grants, deducted FROM added
ON CONFLICT (user_id) DO UPDATE SET
    ledger_rows = o.ledger_rows + EXCLUDED.ledger_rows, failed_rows = o.failed_rows + EXCLUDED.failed_rows,
    failed_tokens = o.failed_tokens + EXCLUDED.failed_tokens,
    calculated_used = o.calculated_used + EXCLUDED.calculated_used,
    calculated_cents = o.calculated_cents + EXCLUDED.calculated_cents,
    counted_used = o.counted_used + EXCLUDED.counted_used, all_grants = o.all_grants + EXCLUDED.all_grants,
    admin_deductions = o.admin_deductions + EXCLUDED.admin_deductions
"""
# The benchmark's own connection, told apart from the bot's ("tokens-bot") when their CPU time is read.
RAW_APPLICATION = "tokens-bench"
# Folds measured here run as soon as rows are in: no lag behind the clock (the default is 300 s).
FOLD = {"tokens_rollup_lag_seconds": 0, "tokens_scan_grace_seconds": 0}
TIMEOUT = {"tokens_statement_timeout_ms": 3_600_000}


def in_time_order(conn: psycopg.Connection) -> None:
    """Rewrite the ledger in created_at order, as an append-only log lies on disk (once: a no-op after)."""
    conn.execute("ANALYZE public.token_usage")
    row = conn.execute(
        "SELECT correlation FROM pg_stats WHERE schemaname = 'public' AND tablename = 'token_usage'"
        " AND attname = 'created_at'"
    ).fetchone()
    if row is not None and row[0] is not None and row[0] > 0.99:
        return
    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("CREATE INDEX IF NOT EXISTS token_usage_bench_time ON public.token_usage (created_at)")
    conn.execute("CLUSTER public.token_usage USING token_usage_bench_time")
    conn.execute("DROP INDEX public.token_usage_bench_time")
    # ANALYZE, not VACUUM: a vacuum records each page's few spare bytes as free space, and the rows
    # appended next would land in old pages all over the table instead of at its end.
    conn.execute("ANALYZE public.token_usage")
    print(f"(rewrote the ledger in time order: {time.perf_counter() - started:,.0f} s)")


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return (time.perf_counter() - started) * 1000, result


def median_ms(run: Callable[[], Any], repeat: int) -> float:
    run()  # warms caches and pools
    return statistics.median(timed(run)[0] for _ in range(repeat))


def raw_fold(conn: psycopg.Connection, settings: Settings, result: FoldResult) -> None:
    """RAW_FOLD over the rows `result` folded, rolled back; JIT off and TOKENS_WORK_MEM, as the fold runs."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL jit = off")
        conn.execute(f"SET LOCAL work_mem = '{settings.tokens_work_mem}'")
        table = f'"{settings.tokens_schema}".ledger_rollups'
        conn.execute(
            RAW_FOLD.format(table=table), {"previous": result.previous, "watermark": result.watermark}
        )


def backend_cpu_ms(conn: psycopg.Connection, application: str) -> float | None:
    """CPU time so far of this database's backends of `application` (None where the server is not on this
    machine): on a busy machine the wall clock also counts the waits for a core, CPU time does not."""
    pids = [
        row[0]
        for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (application,),
        )
    ]
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    return total


def fold_rounds(
    conn: psycopg.Connection, engine: Engine, settings: Settings, *, rounds: int, rows: int, raw_repeat: int
) -> None:
    """Only the incremental folds: `rounds` times, `rows` appended and folded, each beside the raw SQL of
    the same work; the first fold of the ledger is run once if none was. The fold is what the cron job and
    the scheduler's tick run, so it is measured alone, without the scans or the kept signals after it.
    With the settings' TOKENS_ROLLUP_RELOOK_EVERY_MINUTES these folds come too soon after each other to
    recount the relooked hours; one more round then folds with the recount forced, since once an hour a
    fold does that too. Each round's rows stay in the relooked hours that count reads, as a product's rows
    of the day do."""
    with unit_of_work(engine, read_only=True) as probe:
        if rollup_state.state(probe, settings) is None:
            ms, _ = timed(lambda: fold_ledger(engine, engine, settings, full=True))
            print(f"first fold of the ledger: {ms:,.0f} ms")
    vacuum = f'VACUUM "{settings.tokens_schema}".ledger_rollups'
    folds, raws = [], []
    relooking = settings.model_copy(update={"tokens_rollup_relook_every_minutes": 0})
    for round_ in range(rounds + 1):
        last = round_ == rounds
        appended = conn.execute(APPEND, {"n": rows}).rowcount
        conn.execute("ANALYZE public.token_usage")
        conn.execute(SUMMARIZE)
        conn.execute(vacuum)
        load = os.getloadavg()[0]
        before = backend_cpu_ms(conn, "tokens-bot")
        ms, result = timed(lambda last=last: fold_ledger(engine, engine, relooking if last else settings))
        after = backend_cpu_ms(conn, "tokens-bot")
        conn.execute(vacuum)
        raw_before = backend_cpu_ms(conn, RAW_APPLICATION)
        raw = median_ms(lambda folded=result: raw_fold(conn, settings, folded), raw_repeat)
        raw_after = backend_cpu_ms(conn, RAW_APPLICATION)
        if not last:
            folds.append(ms)
            raws.append(raw)
        cpu = "" if before is None or after is None else f", backends' CPU {after - before:,.0f} ms"
        raw_cpu = (
            ""
            if raw_before is None or raw_after is None
            else f", CPU {(raw_after - raw_before) / (raw_repeat + 1):,.0f} ms"
        )
        recount = (
            "with the relooked hours recounted"
            if result.relooked
            else "without recounting the relooked hours"
        )
        print(
            f"fold of {appended:,} rows {recount}: {ms:,.0f} ms ({result.users:,} users changed,"
            f" {result.late_users:,} re-read late{cpu}); raw SQL of the same work: {raw:,.0f} ms{raw_cpu},"
            f" load {load:.2f}"
        )
    print(
        f"median of the first {rounds}: fold {statistics.median(folds):,.0f} ms,"
        f" raw SQL {statistics.median(raws):,.0f} ms"
    )


def digest_scan(service: TokensService, settings: Settings) -> int:
    """The digest's scan: every discrepant user streamed, as `build_digest` reads them."""
    with unit_of_work(service.scan_engine, read_only=True, isolation="REPEATABLE READ") as conn:
        shape = service.shape(conn)
        ledger = scan_ledger(conn, shape, settings)
        minimum = settings.tokens_scan_threshold
        return sum(1 for _ in stream_discrepancies(conn, shape, settings, minimum=minimum, ledger=ledger))


def tail_rows(service: TokensService, settings: Settings) -> tuple[str, int]:
    with unit_of_work(service.engine, read_only=True) as conn:
        ledger = scan_ledger(conn, service.shape(conn), settings)
        if ledger.folded_to is None:
            return f"full ledger ({ledger.full_reason})", 0
        n = conn.exec_driver_sql(
            "SELECT count(*) FROM public.token_usage WHERE created_at > %(w)s", {"w": ledger.folded_to}
        ).scalar_one()
        return "folded totals + rows since", int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the large data set (changed by the run)")
    parser.add_argument("--small-url", help="a smaller data set (changed too), for the memory comparison")
    parser.add_argument("--raw-repeat", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--folds", type=int, help="measure only this many incremental folds of 100,000 rows")
    args = parser.parse_args()
    data = describe(args.url)
    if data is None:
        raise SystemExit("no benchmark data: run python -m tests.benchmarks.data first")
    print(f"data: {data.users:,} users, {data.rows:,} ledger rows in {data.database}\n")
    settings = Settings(database_url=args.url, tokens_admins=[ACTOR], **TIMEOUT)  # type: ignore[arg-type]
    fold_settings = settings.model_copy(update=FOLD)
    engine = make_engine(args.url, statement_timeout_ms=3_600_000)
    migrate(engine, settings.tokens_schema)
    service = TokensService(settings, engine)
    with psycopg.connect(psql_url(args.url), autocommit=True, application_name=RAW_APPLICATION) as conn:
        in_time_order(conn)
        conn.execute(BRIN)
        conn.execute(SUMMARIZE)
        if args.folds:
            fold_rounds(
                conn, engine, fold_settings, rounds=args.folds, rows=100_000, raw_repeat=args.raw_repeat
            )
            engine.dispose()
            return
        with service.engine.connect() as probe:
            shape = service.shape(probe)
        raw_ms = median_ms(lambda: raw_discrepancies(conn, settings, shape), args.raw_repeat)
        print(f"raw full-scan SQL (Step 6 for everyone + findings of the page's rows): {raw_ms:,.0f} ms\n")

        def fold(full: bool = False) -> str:
            # As autovacuum would between folds (a benchmark server may run without it): the upserts
            # would otherwise write into a table of the previous folds' dead rows.
            vacuum = f'VACUUM "{settings.tokens_schema}".ledger_rollups'
            conn.execute(vacuum)
            load = os.getloadavg()[0]
            ms, result = timed(lambda: fold_ledger(engine, engine, fold_settings, full=full))
            recount = ", relooked hours recounted" if result.relooked else ""
            done = (
                f"{ms:,.0f} ms ({result.users:,} users changed, {result.late_users:,} re-read late{recount})"
            )
            kept_ms, kept = timed(lambda: keep_largest_signals(engine, engine, fold_settings, recount=full))
            done += (
                f"; then the finding signals of the largest discrepancies: {kept_ms:,.0f} ms"
                f" ({kept.counted:,} counted, {kept.reused:,} still held)"
            )
            if full:
                return f"{done}, load {load:.2f}"
            conn.execute(vacuum)
            raw = median_ms(lambda: raw_fold(conn, fold_settings, result), args.raw_repeat)
            return f"{done}; raw SQL of the same work: {raw:,.0f} ms ({ms / raw:.2f}x), load {load:.2f}"

        print(f"full fold of the ledger: {fold(full=True)}")
        print(f"\n{'ledger read':<44} {'page 1 ms':>10} {'ratio':>7} {'digest scan ms':>15} {'ratio':>7}")

        def scans() -> None:
            how, n = tail_rows(service, settings)
            page = median_ms(
                lambda: reply_to_command(service, ACTOR, "discrepancies", slack=NO_SLACK), args.repeat
            )
            digest = median_ms(lambda: digest_scan(service, settings), max(3, args.repeat // 2))
            label = f"{how}: {n:,}" if n or "full" not in how else how
            print(f"{label:<44} {page:10,.1f} {page / raw_ms:6.3f}x {digest:15,.1f} {digest / raw_ms:6.3f}x")

        scans()
        for n in (100_000, 500_000):
            appended = conn.execute(APPEND, {"n": n}).rowcount
            conn.execute("ANALYZE public.token_usage")
            conn.execute(SUMMARIZE)
            scans()
            print(f"  fold of those {appended:,} rows: {fold()}")
            scans()
        ms, checked = timed(lambda: verify_ledger(engine, engine, settings))
        print(
            f"\nrollup --verify: {checked.users:,} users, {len(checked.mismatches)} mismatches, {ms:,.0f} ms"
        )
    if args.small_url:
        small_engine = make_engine(args.small_url, statement_timeout_ms=3_600_000)
        migrate(small_engine, settings.tokens_schema)
        with psycopg.connect(psql_url(args.small_url), autocommit=True) as conn:
            in_time_order(conn)
            conn.execute(BRIN)
        small = fold_settings.model_copy(update={"database_url": args.small_url})
        fold_ledger(small_engine, small_engine, small, full=True)
        small_service = TokensService(
            small.model_copy(update={"tokens_scan_grace_seconds": 60}), small_engine
        )
        page = median_ms(
            lambda: reply_to_command(small_service, ACTOR, "discrepancies", slack=NO_SLACK), args.repeat
        )
        digest = median_ms(
            lambda: digest_scan(small_service, small_service.settings), max(3, args.repeat // 2)
        )
        small_data = describe(args.small_url)
        assert small_data is not None
        print(
            f"\nthe same scans at {small_data.rows:,} rows, just folded: page 1 {page:,.1f} ms,"
            f" digest scan {digest:,.1f} ms"
        )
        small_engine.dispose()
        print("\npeak memory of the scan (fresh process: page 1 + every discrepant user streamed)")
        measured = [(args.small_url, measure_memory(args.small_url)), (args.url, measure_memory(args.url))]
        for url, m in measured:
            print(
                f"  {url.rsplit('/', 1)[-1]:<24} maxrss {m['maxrss_mb']:7.1f} MB"
                f"   python heap peak {m['python_peak_mb']:6.2f} MB   ({int(m['streamed']):,} users streamed)"
            )
        growth = measured[1][1]["maxrss_mb"] / measured[0][1]["maxrss_mb"] - 1
        print(f"  growth: {growth:+.1%}")
    engine.dispose()


if __name__ == "__main__":
    main()
