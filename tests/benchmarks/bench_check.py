"""Benchmark of `/tokens check`: the core and the whole Slack round trip, beside raw SQL on the same data.

Run: `python -m tests.benchmarks.bench_check --url postgresql://postgres@127.0.0.1:5432/tokens_bench`
after loading the data with `python -m tests.benchmarks.data --url ... --users 100000 --rows 5000000`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg

from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.benchmarks.data import describe, psql_url
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient

# The guide's Steps 1-3 plus the duplicate and failure scan, as an operator would paste them into psql.
RAW_CHECK_SQL = [
    """SELECT p.vibe_assistant_tokens_used, p.vibe_assistant_total_cost, p.vibe_assistant_tokens_remaining,
              p.membership_tier,
              coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND t.action_type NOT IN ('admin_grant','admin_deduct')), 0),
              coalesce(sum(t.cost_estimate) FILTER (WHERE t.success AND t.action_type NOT IN ('admin_grant','admin_deduct')), 0) / 100,
              coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND t.action_type = 'admin_grant'), 0),
              coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND t.action_type = 'admin_deduct'), 0),
              count(t.id), count(t.id) FILTER (WHERE NOT t.success)
       FROM user_profiles p LEFT JOIN token_usage t ON t.user_id = p.user_id
       WHERE p.user_id = %(u)s GROUP BY p.user_id""",
    """SELECT action_type, model_used, count(*), count(*) FILTER (WHERE NOT success),
              sum(tokens_used) FILTER (WHERE success), sum(cost_estimate) FILTER (WHERE success) / 100,
              min(created_at), max(created_at)
       FROM token_usage WHERE user_id = %(u)s GROUP BY action_type, model_used ORDER BY 5 DESC NULLS LAST""",
    """SELECT id, created_at, action_type, model_used, tokens_used, cost_estimate, success, error_message
       FROM token_usage WHERE user_id = %(u)s ORDER BY created_at DESC, id DESC LIMIT 10""",
    """SELECT count(*) FILTER (WHERE dup), sum(tokens_used) FILTER (WHERE dup),
              count(*) FILTER (WHERE NOT success), sum(tokens_used) FILTER (WHERE NOT success)
       FROM (SELECT tokens_used, success,
                    created_at - lag(created_at) OVER (PARTITION BY action_type, model_used, tokens_used,
                        input_tokens, output_tokens ORDER BY created_at) <= interval '5 seconds'
                    OR row_number() OVER (PARTITION BY metadata->>'request_id' ORDER BY created_at) > 1 AS dup
             FROM token_usage WHERE user_id = %(u)s AND action_type NOT IN ('admin_grant','admin_deduct')) x""",
]


def paired_timings(
    first: Callable[[], object], second: Callable[[], object], repeat: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of `repeat` runs of each after two warm-up runs, taking turns: on a machine others
    share, both see the same load (one run a hundred times, then the other, and the ratio moved with
    whatever else ran in between)."""
    runs: tuple[list[float], list[float]] = ([], [])
    for _ in range(2):
        first()
        second()
    for _ in range(repeat):
        for run, samples in zip((first, second), runs, strict=True):
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000)
    return runs


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples):7.2f} ms   p95 {percentile(samples, 95):7.2f} ms"
        f"   p99 {percentile(samples, 99):7.2f} ms"
    )


def cpu_per_run(run: Callable[[], object], backend_pid: int, repeat: int) -> tuple[float, float] | None:
    """Milliseconds of CPU per run, (this process, the PostgreSQL backend serving it), from Linux /proc.

    The runs go one after another over one connection (the pool hands the checks all one), so the
    backend's `utime + stime` is readable when the server runs on this machine. CPU time is the figure a
    busy machine disturbs least. None where /proc or the backend cannot be read.
    """
    stat = Path(f"/proc/{backend_pid}/stat")
    if not stat.exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def backend() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    started, backend_started = time.process_time(), backend()
    for _ in range(repeat):
        run()
    return (
        (time.process_time() - started) / repeat * 1000,
        (backend() - backend_started) / repeat * 1000,
    )


def cpu_line(label: str, cpu: tuple[float, float] | None) -> str:
    if cpu is None:
        return f"  {label:<30}unreadable (PostgreSQL not on this machine)"
    return f"  {label:<30}this process {cpu[0]:.2f} ms + its PostgreSQL backend {cpu[1]:.2f} ms = {sum(cpu):.2f} ms"


def raw_check(conn: psycopg.Connection, user_id: str) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for sql in RAW_CHECK_SQL:
            cur.execute(sql, {"u": user_id})
            cur.fetchall()


def end_to_end(url: str, email: str, repeat: int) -> tuple[list[float], list[float]]:
    """Signed `/tokens check` into a running `tokens-bot serve`; ack time and time until the reply arrives."""
    fake = FakeSlack().start()
    bot = BotProcess(bot_env(url, fake.api_url), Path(tempfile.mkdtemp()) / "bot.log")
    slack = SlackClient(bot.url, SIGNING_SECRET, fake.url)
    acks, replies = [], []
    try:
        for i in range(repeat + 5):
            started = time.monotonic()
            result, name = slack.command(f"check {email}")
            assert result.status == 200, result.body
            [reply] = fake.wait_for(lambda c, name=name: c.path == f"/response/{name}")
            if i >= 5:  # the first requests warm each worker's pool
                acks.append(result.seconds * 1000)
                replies.append((reply.at - started) * 1000)
    finally:
        bot.stop()
        fake.stop()
    return acks, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    data = describe(args.url)
    if data is None:
        raise SystemExit("no benchmark data: run python -m tests.benchmarks.data first")
    print(f"data: {data.users:,} users, {data.rows:,} ledger rows in {data.database}")
    settings = Settings(database_url=args.url, tokens_admins=["UBENCH"])
    service = TokensService(settings, make_engine(args.url))

    def check(user_id: str) -> object:
        return service.check("UBENCH", UUID(user_id))

    with psycopg.connect(psql_url(args.url)) as conn:
        for label, user_id, rows in (
            ("typical", data.typical_user_id, data.typical_user_rows),
            ("heavy", data.heavy_user_id, data.heavy_user_rows),
        ):
            print(f"\ncheck, {label} user ({rows:,} ledger rows), {args.repeat} runs")
            core, raw = paired_timings(
                lambda u=user_id: check(u), lambda u=user_id: raw_check(conn, u), args.repeat
            )
            print(f"  core  (TokensService.check)   {summary(core)}")
            print(f"  raw SQL (psycopg, same work)  {summary(raw)}")
            print(f"  core / raw (median)           {statistics.median(core) / statistics.median(raw):.2f}x")
            with service.engine.connect() as pooled:
                pid = pooled.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
            print(cpu_line("CPU per core check", cpu_per_run(lambda u=user_id: check(u), pid, args.repeat)))
            raw_cpu = cpu_per_run(lambda u=user_id: raw_check(conn, u), conn.info.backend_pid, args.repeat)
            print(cpu_line("CPU per raw SQL check", raw_cpu))
    print(f"\nend to end over signed HTTP, typical user, {args.repeat} requests")
    acks, replies = end_to_end(args.url, data.typical_user_email, args.repeat)
    print(f"  ack (HTTP 200)                {summary(acks)}")
    print(f"  reply at response_url         {summary(replies)}")


if __name__ == "__main__":
    main()
