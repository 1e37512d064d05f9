"""Benchmark of the fleet commands beside raw SQL doing the same work, the scan's memory, and Slack latency.

Run: `python -m tests.benchmarks.bench_fleet --url postgresql://postgres@127.0.0.1:5432/tokens_bench
--small-url postgresql://postgres@127.0.0.1:5432/tokens_bench_500k` after loading both with
`python -m tests.benchmarks.data` (100,000 users; 5,000,000 and 500,000 ledger rows).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import event

from bot.routes import reply_to_command
from bot.slack.console import ConsoleSlack
from core.services.service import TokensService
from core.settings import Settings
from core.store.columns import Columns
from core.store.db import make_engine, unit_of_work
from core.store.discrepancies import stream_discrepancies
from core.store.product import ProductShape
from core.store.signals import ledger_signals_sql, prices_json
from tests.benchmarks.bench_check import percentile, summary
from tests.benchmarks.data import describe, psql_url
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient

# The routes these tests drive never post: a console port that shows nothing.
NO_SLACK = ConsoleSlack(lambda banner, reply: None)

ACTOR = "UBENCH"

# Written the way an operator would write Step 6 for everyone: the guide's arithmetic per user, the
# initial grant from the tier (else the first admin_grant, found with DISTINCT ON; a tier grant the
# bot approved is not the logged one), counted, one page; users whose discrepancy their last minute's
# tokens could explain are left out.
RAW_DISCREPANCIES_SQL = """
WITH l AS (
    SELECT user_id, coalesce(sum(tokens_used) FILTER (WHERE created_at > now() - interval '60 seconds'), 0)
               AS recent, count(*) AS n, count(*) FILTER (WHERE NOT success) AS failed,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type NOT IN ('admin_grant','admin_deduct')), 0) AS used,
           coalesce(sum(cost_estimate) FILTER (WHERE success AND action_type NOT IN ('admin_grant','admin_deduct')), 0) AS cents,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_grant'), 0) AS grants,
           coalesce(sum(tokens_used) FILTER (WHERE success AND action_type = 'admin_deduct'), 0) AS deducts,
           bool_or(success AND action_type = 'admin_grant' AND tokens_used = 600000
                   AND NOT coalesce(metadata->>'source' = 'slack' AND metadata ? 'request_id', false)) AS has_600k,
           bool_or(success AND action_type = 'admin_grant' AND tokens_used = 5000000
                   AND NOT coalesce(metadata->>'source' = 'slack' AND metadata ? 'request_id', false)) AS has_5m
    FROM token_usage GROUP BY user_id
), f AS (
    SELECT DISTINCT ON (user_id) user_id, tokens_used AS first_grant FROM token_usage
    WHERE success AND action_type = 'admin_grant' ORDER BY user_id, created_at, id
), b AS (
    SELECT p.user_id, p.vibe_assistant_tokens_used - coalesce(l.used, 0) AS used_d,
           p.vibe_assistant_tokens_remaining - (
               coalesce(CASE p.membership_tier WHEN 'annual' THEN 5000000 WHEN 'monthly' THEN 600000 END,
                        f.first_grant, 0)
               + coalesce(l.grants, 0) - coalesce(l.used, 0) - coalesce(l.deducts, 0)
               - CASE WHEN p.membership_tier = 'annual' AND l.has_5m THEN 5000000
                      WHEN p.membership_tier = 'monthly' AND l.has_600k THEN 600000
                      WHEN p.membership_tier IN ('annual', 'monthly') THEN 0
                      ELSE coalesce(f.first_grant, 0) END) AS remaining_d,
           p.vibe_assistant_total_cost - round(coalesce(l.cents, 0) / 100, 2) AS cost_d,
           coalesce(l.recent, 0) AS recent
    FROM user_profiles p LEFT JOIN l USING (user_id) LEFT JOIN f USING (user_id)
)
SELECT user_id, used_d, remaining_d, cost_d, count(*) OVER () AS total
FROM b WHERE greatest(abs(used_d), abs(remaining_d)) > 100
  AND greatest(abs(used_d), abs(remaining_d)) - recent > 100
ORDER BY greatest(abs(used_d), abs(remaining_d)) DESC, user_id LIMIT 10
"""
RAW_LOWBALANCE_SQL = """
SELECT p.user_id, p.vibe_assistant_tokens_remaining, p.vibe_assistant_tokens_used, count(*) OVER () AS total,
       (SELECT coalesce(sum(t.tokens_used), 0) FROM token_usage t WHERE t.user_id = p.user_id AND t.success
          AND t.action_type NOT IN ('admin_grant','admin_deduct') AND t.created_at > now() - interval '7 days')
FROM user_profiles p WHERE p.vibe_assistant_tokens_remaining < 10000
ORDER BY p.vibe_assistant_tokens_remaining, p.user_id LIMIT 10
"""
RAW_TOP_SQL = [
    "SELECT count(*) FROM user_profiles",
    """SELECT user_id, vibe_assistant_tokens_used, vibe_assistant_total_cost, vibe_assistant_tokens_remaining
       FROM user_profiles ORDER BY vibe_assistant_tokens_used DESC, user_id LIMIT 10""",
]


def _read_only(conn: psycopg.Connection, work: Callable[[psycopg.Cursor], None]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute("SET LOCAL work_mem = '32MB'")
        work(cur)


def raw_discrepancies(conn: psycopg.Connection, settings: Settings, shape: ProductShape) -> None:
    """The scan, then the check's own findings query for the ten users on the page, as the bot does."""
    statement = str(ledger_signals_sql(Columns.of(shape, settings)))

    def work(cur: psycopg.Cursor) -> None:
        cur.execute(RAW_DISCREPANCIES_SQL)
        page = cur.fetchall()
        signals = re.sub(r"(?<!:):u\b", "%(u)s", statement).replace(":prices", "%(p)s")
        signals = signals.replace(":window", "%(w)s").replace(":tolerance", "%(t)s")
        prices = Jsonb(prices_json(settings.tokens_model_prices))
        for row in page:
            cur.execute(
                signals,
                {
                    "u": row[0],
                    "p": prices,
                    "w": settings.tokens_duplicate_window_seconds,
                    "t": settings.tokens_cost_drift_tolerance,
                },
            )
            cur.fetchall()

    _read_only(conn, work)


def raw_queries(conn: psycopg.Connection, statements: list[str]) -> None:
    def work(cur: psycopg.Cursor) -> None:
        for sql in statements:
            cur.execute(sql)
            cur.fetchall()

    _read_only(conn, work)


def bot_statements(service: TokensService, command: str) -> list[tuple[str, Any]]:
    """The exact statements and parameters the bot sends for a command, captured from its engine."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(service.engine, "before_cursor_execute", record)
    try:
        reply_to_command(service, ACTOR, command, slack=NO_SLACK)
    finally:
        event.remove(service.engine, "before_cursor_execute", record)
    return seen


def replay(conn: psycopg.Connection, statements: list[tuple[str, Any]]) -> None:
    """The bot's own SQL through bare psycopg: what the bot costs beyond its queries."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for statement, parameters in statements:
            cur.execute(statement, parameters)
            if cur.description is not None:
                cur.fetchall()


def memory_probe(url: str) -> dict[str, float]:
    """Run in a fresh process: the scan (a page, and every discrepant user streamed) and its peak memory."""
    settings = Settings(database_url=url, tokens_admins=[ACTOR])
    service = TokensService(settings, make_engine(url, pool_size=1))
    tracemalloc.start()
    reply_to_command(service, ACTOR, "discrepancies", slack=NO_SLACK)
    streamed = 0
    with unit_of_work(service.engine, read_only=True, isolation="REPEATABLE READ") as conn:
        for _ in stream_discrepancies(conn, service.shape(conn), settings, minimum=0):
            streamed += 1
    _, traced_peak = tracemalloc.get_traced_memory()
    return {
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python_peak_mb": traced_peak / 1024 / 1024,
        "streamed": streamed,
    }


def measure_memory(url: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_fleet", "--memory-probe", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def slack_latency(url: str, commands: dict[str, int]) -> dict[str, tuple[list[float], list[float]]]:
    """Signed slash commands into `tokens-bot serve`: the ack (HTTP 200) and the first post at response_url."""
    fake = FakeSlack().start()
    # One benchmark user sends hundreds of commands a minute; the per-user rate limit is not under test.
    env = bot_env(url, fake.api_url, TOKENS_RATE_LIMIT_PER_MINUTE="100000")
    bot = BotProcess(env, Path(tempfile.mkdtemp()) / "bot.log")
    slack = SlackClient(bot.url, SIGNING_SECRET, fake.url)
    results: dict[str, tuple[list[float], list[float]]] = {}
    try:
        for command, repeat in commands.items():
            acks, first = [], []
            for i in range(repeat + 2):
                started = time.monotonic()
                result, name = slack.command(command)
                assert result.status == 200, result.body
                calls = fake.wait_for(lambda c, name=name: c.path == f"/response/{name}", timeout=60)
                # Wait for the final reply too, so the next request does not queue behind this scan.
                if "Working" in calls[0].body.get("text", ""):
                    fake.wait_for(lambda c, name=name: c.path == f"/response/{name}", count=2, timeout=60)
                if i >= 2:  # the first requests warm each worker's pool
                    acks.append(result.seconds * 1000)
                    first.append((calls[0].at - started) * 1000)
            results[command] = (acks, first)
    finally:
        bot.stop()
        fake.stop()
    return results


def paired(
    bot: Callable[[], object], raw: Callable[[], object], repeat: int
) -> tuple[list[float], list[float]]:
    """Bot and raw runs alternate, so load from anything else on the machine weighs on both alike."""
    bot_ms: list[float] = []
    raw_ms: list[float] = []
    for i in range(repeat + 1):
        for run, samples in ((bot, bot_ms), (raw, raw_ms)):
            started = time.perf_counter()
            run()
            if i:  # the first round warms caches and pools
                samples.append((time.perf_counter() - started) * 1000)
    return bot_ms, raw_ms


def _ratio(bot: list[float], raw: list[float], slack_ms: float = 0) -> str:
    b, r = statistics.median(bot), statistics.median(raw)
    return f"{b:9.1f} {r:9.1f} {b / r:6.2f}x  (target ≤ {'1.15x' if not slack_ms else f'1.5x+{slack_ms:.0f}ms = {1.5 * r + slack_ms:.1f} ms'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="the 5M-row data set")
    parser.add_argument("--small-url", help="the 500k-row data set, for the memory comparison")
    parser.add_argument("--scan-repeat", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return
    if not args.url:
        parser.error("--url is required")
    data = describe(args.url)
    if data is None:
        raise SystemExit("no benchmark data: run python -m tests.benchmarks.data first")
    print(f"data: {data.users:,} users, {data.rows:,} ledger rows in {data.database}\n")
    settings = Settings(database_url=args.url, tokens_admins=[ACTOR])
    service = TokensService(settings, make_engine(args.url))
    scan_sql = bot_statements(service, "discrepancies")
    with service.engine.connect() as probe:
        shape = service.shape(probe)
    with psycopg.connect(psql_url(args.url)) as conn:
        rows = [
            (
                "discrepancies, vs the bot's own SQL",
                *paired(
                    lambda: reply_to_command(service, ACTOR, "discrepancies", slack=NO_SLACK),
                    lambda: replay(conn, scan_sql),
                    args.scan_repeat,
                ),
                0,
            ),
            (
                "discrepancies, vs hand-written SQL",
                *paired(
                    lambda: reply_to_command(service, ACTOR, "discrepancies", slack=NO_SLACK),
                    lambda: raw_discrepancies(conn, settings, shape),
                    args.scan_repeat,
                ),
                0,
            ),
            (
                "lowbalance (page 1)",
                *paired(
                    lambda: reply_to_command(service, ACTOR, "lowbalance", slack=NO_SLACK),
                    lambda: raw_queries(conn, [RAW_LOWBALANCE_SQL]),
                    args.repeat,
                ),
                20,
            ),
            (
                "top 20 (page 1)",
                *paired(
                    lambda: reply_to_command(service, ACTOR, "top", slack=NO_SLACK),
                    lambda: raw_queries(conn, RAW_TOP_SQL),
                    args.repeat,
                ),
                20,
            ),
        ]
    print(f"{'command (bot = parse + core + render)':<40} {'bot ms':>9} {'raw ms':>9} {'ratio':>7}")
    for label, bot, raw, slack_ms in rows:
        print(f"{label:<40} {_ratio(bot, raw, slack_ms)}")

    if args.small_url:
        print("\npeak memory of the scan (fresh process: page 1 + every discrepant user streamed)")
        small, large = measure_memory(args.small_url), measure_memory(args.url)
        for label, m in (("500k rows", small), ("5M rows", large)):
            print(
                f"  {label:<10} maxrss {m['maxrss_mb']:7.1f} MB   python heap peak {m['python_peak_mb']:6.2f} MB"
                f"   ({int(m['streamed']):,} users streamed)"
            )
        growth = large["maxrss_mb"] / small["maxrss_mb"] - 1
        print(f"  growth 500k → 5M: {growth:+.1%} (target ≤ +10%)")

    print("\ntime to the first Slack reply over signed HTTP (tokens-bot serve, fake Slack on loopback)")
    latency = slack_latency(args.url, {"discrepancies": 10, "lowbalance": args.repeat, "top": args.repeat})
    all_acks = [a for acks, _ in latency.values() for a in acks]
    for command, (acks, first) in latency.items():
        print(
            f"  {command:<14} ack p50 {statistics.median(acks):6.1f} ms  p99 {percentile(acks, 99):6.1f} ms"
            f"   first reply p50 {statistics.median(first):7.1f} ms  p99 {percentile(first, 99):7.1f} ms"
        )
    print(f"  all acks       {summary(all_acks)}   (target p99 < 50 ms)")


if __name__ == "__main__":
    main()
