"""Load: concurrent signed `/tokens check` requests against `tokens-bot serve` on the 5M-row benchmark data.

Run: `python -m tests.benchmarks.load_check --url postgresql://postgres@127.0.0.1:5432/tokens_bench`
(optionally `--workers 2 --threads 8 --pool 5 --reply-threads 16 --concurrency 200 --rounds 3`).
Reports throughput, ack and reply latency percentiles, and errors: a non-200 ack, a reply that never
came, or a reply that is not a check report.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from tests.benchmarks.bench_check import percentile
from tests.benchmarks.data import describe, psql_url
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.fake_slack import FakeSlack
from tests.support.slack_http import SlackClient


def sample_users(url: str, n: int) -> list[str]:
    """`n` random users with a profile: each request reads a different user, as a busy team would."""
    with psycopg.connect(psql_url(url)) as conn:
        rows = conn.execute(
            "SELECT user_id::text FROM user_profiles TABLESAMPLE SYSTEM (5) LIMIT %s", (n,)
        ).fetchall()
    return [r[0] for r in rows]


def one_round(slack: SlackClient, fake: FakeSlack, users: list[str]) -> tuple[list[float], list[float], int, float]:
    """Fire one request per user at once (a barrier releases them together); wait for every reply."""
    barrier = threading.Barrier(len(users))
    sent: dict[str, float] = {}
    acks: list[float] = []
    errors = 0

    def fire(user: str) -> tuple[str, int, float]:
        barrier.wait()
        started = time.monotonic()
        result, name = slack.command(f"check {user}", user="ULOAD")
        sent[name] = started
        return name, result.status, result.seconds

    started = time.monotonic()
    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(fire, users))
    names = []
    for name, status, seconds in results:
        if status == 200:
            acks.append(seconds * 1000)
            names.append(name)
        else:
            errors += 1
    replies: list[float] = []
    last = started
    deadline = time.monotonic() + 60
    for name in names:
        path = f"/response/{name}"
        try:
            [call] = fake.wait_for(lambda c: c.path == path, timeout=max(0.1, deadline - time.monotonic()))  # noqa: B023
        except AssertionError:
            errors += 1
            continue
        if "Recent operations" not in str(call.body.get("blocks")) and "No operations" not in str(call.body):
            errors += 1
        replies.append((call.at - sent[name]) * 1000)
        last = max(last, call.at)
    return acks, replies, errors, last - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pool", type=int, default=5)
    parser.add_argument("--reply-threads", type=int, default=16)
    args = parser.parse_args()
    data = describe(args.url)
    if data is None:
        raise SystemExit("no benchmark data: run python -m tests.benchmarks.data first")
    users = sample_users(args.url, args.concurrency * (args.rounds + 1))
    fake = FakeSlack().start()
    env = bot_env(
        args.url,
        fake.api_url,
        TOKENS_VIEWERS="ULOAD",
        WEB_CONCURRENCY=str(args.workers),
        GUNICORN_THREADS=str(args.threads),
        TOKENS_DB_POOL_SIZE=str(args.pool),
        TOKENS_REPLY_THREADS=str(args.reply_threads),
    )
    bot = BotProcess(env, Path(tempfile.mkdtemp()) / "bot.log")
    slack = SlackClient(bot.url, SIGNING_SECRET, fake.url)
    print(
        f"data: {data.users:,} users, {data.rows:,} ledger rows; bot: {args.workers} workers x {args.threads}"
        f" threads, pool {args.pool}+{args.pool}, {args.reply_threads} reply threads per worker"
    )
    try:
        batches = [users[i * args.concurrency : (i + 1) * args.concurrency] for i in range(args.rounds + 1)]
        one_round(slack, fake, batches[0])  # warm-up: pools connect, the product schema is inspected
        acks: list[float] = []
        replies: list[float] = []
        errors = 0
        walls = []
        for batch in batches[1:]:
            a, r, e, wall = one_round(slack, fake, batch)
            acks += a
            replies += r
            errors += e
            walls.append(wall)
    finally:
        bot.stop()
        fake.stop()
    total = args.concurrency * args.rounds
    print(f"{args.rounds} rounds of {args.concurrency} concurrent /tokens check: {total} requests, {errors} errors")
    print(f"  throughput   {total / sum(walls):7.1f} replies/s (all {args.concurrency} answered in {min(walls):.2f}-{max(walls):.2f} s)")
    for label, samples in (("ack (HTTP)", acks), ("reply", replies)):
        print(
            f"  {label:<12} p50 {percentile(samples, 50):7.1f} ms   p95 {percentile(samples, 95):7.1f} ms"
            f"   p99 {percentile(samples, 99):7.1f} ms   max {max(samples):7.1f} ms"
        )


if __name__ == "__main__":
    main()
