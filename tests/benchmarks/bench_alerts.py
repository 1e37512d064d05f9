"""Benchmark of the scheduler's alerts and the Home tab, beside raw SQL doing the same work.

Run: `python -m tests.benchmarks.bench_alerts --url postgresql://postgres@127.0.0.1:5432/tokens_bench_daily`
on a database loaded with `python -m tests.benchmarks.data` (the run migrates the bot's schema there, so
give it a database of its own). The alerts' state is emptied first, so the first tick finds every low
balance at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import psycopg

from bot.bootstrap import build_service, prepare_database
from bot.render.alerts import render_alerts
from bot.render.home import render_home
from core.settings import Settings
from tests.benchmarks.bench_check import summary
from tests.benchmarks.data import psql_url

ACTOR = "UBENCH"
RUNS = 100

# What a tick with nothing new does, written by hand for the guide's schema: the tick's lock, the
# expiry and reminder look-ups, forgetting recovered balance crossings, recording new ones, and asking
# whether the fleet scan is due.
RAW_STEADY_TICK = [
    "SELECT pg_try_advisory_xact_lock(7412004, hashtext('tokens_bot'))",
    "SELECT id FROM tokens_bot.approval_requests WHERE status = 'pending' AND expires_at <= now()"
    " FOR UPDATE SKIP LOCKED",
    "SELECT id FROM tokens_bot.approval_requests WHERE status = 'pending' AND channel IS NOT NULL"
    " AND coalesce(reminded_at, requested_at) <= now() - interval '4 hours' FOR UPDATE SKIP LOCKED",
    "DELETE FROM tokens_bot.alerts a WHERE a.kind = 'balance' AND (a.user_id, a.threshold) NOT IN"
    " (SELECT p.user_id::text, k.t FROM user_profiles p JOIN unnest('{10000,0}'::bigint[]) k(t)"
    " ON p.vibe_assistant_tokens_remaining < k.t WHERE p.vibe_assistant_tokens_remaining < 10000)",
    "INSERT INTO tokens_bot.alerts SELECT 'balance', k.t, p.user_id::text, p.vibe_assistant_tokens_remaining,"
    " now(), now() FROM user_profiles p JOIN unnest('{10000,0}'::bigint[]) k(t)"
    " ON p.vibe_assistant_tokens_remaining < k.t WHERE p.vibe_assistant_tokens_remaining < 10000"
    " ON CONFLICT DO NOTHING RETURNING user_id",
    "SELECT max(scanned_at) FROM tokens_bot.fleet_scans",
]
RAW_HOME = [
    "SELECT * FROM tokens_bot.approval_requests WHERE status = 'pending' AND expires_at > now() ORDER BY id",
    "SELECT * FROM tokens_bot.approval_requests WHERE status <> 'pending'"
    " ORDER BY decided_at DESC NULLS LAST, id DESC LIMIT 5",
    "SELECT * FROM tokens_bot.fleet_scans ORDER BY scanned_at DESC LIMIT 1",
    "SELECT * FROM tokens_bot.digests ORDER BY created_at DESC LIMIT 1",
]


def timed(run: Callable[[], object], runs: int = RUNS) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def raw(conn: psycopg.Connection, statements: list[str], *, read_only: bool) -> Callable[[], None]:
    def run() -> None:
        with conn.transaction(), conn.cursor() as cur:
            if read_only:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for sql in statements:
                cur.execute(sql)
                if cur.description:
                    cur.fetchall()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_alerts")
    parser.add_argument("--url", required=True, help="a benchmark database of its own (it gets migrated)")
    args = parser.parse_args(argv)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=args.url,
        tokens_admins=[ACTOR],
        tokens_alerts_channel="CBENCH",
    )
    service = build_service(settings, prepare_database(settings))
    with psycopg.connect(psql_url(args.url), autocommit=True) as conn:
        conn.execute("TRUNCATE tokens_bot.alerts, tokens_bot.fleet_scans")
        users = conn.execute("SELECT count(*) FROM user_profiles").fetchone()
        rows = conn.execute("SELECT count(*) FROM token_usage").fetchone()
        print(f"data: {users[0] if users else 0:,} users, {rows[0] if rows else 0:,} ledger rows")

        started = time.perf_counter()
        first = service.tick()
        print(
            f"first tick (every crossing at once, and the fleet scan): {(time.perf_counter() - started) * 1000:,.1f} ms,"
            f" {len(first.alerts):,} alerts"
        )
        print(
            "render the alerts message:        ",
            summary(timed(lambda: render_alerts(first.alerts, 1000).as_kwargs())),
        )

        # Bot and raw alternate, a run each, so the machine's drift touches both alike.
        bot, hand = [], []
        raw_tick = raw(conn, RAW_STEADY_TICK, read_only=False)
        for _ in range(RUNS):
            bot += timed(service.tick, 1)
            hand += timed(raw_tick, 1)
        print("steady tick, bot (nothing new):   ", summary(bot))
        print("steady tick, raw SQL:             ", summary(hand))

        bot, hand = [], []
        raw_home = raw(conn, RAW_HOME, read_only=True)
        for _ in range(RUNS):
            bot += timed(lambda: render_home(service.home(ACTOR)), 1)
            hand += timed(raw_home, 1)
        print("Home tab, bot (read and render):  ", summary(bot))
        print("Home tab, raw SQL (read):         ", summary(hand))
    service.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
