"""Benchmark of a batch fix: propose it for every user of one cause, approve it, apply and verify it,
beside raw SQL making the same changes over the same users in one statement.

Run: `python -m tests.benchmarks.bench_fix --url postgresql://postgres@127.0.0.1:5432/tokens_bench_fix`.
The first run loads the benchmark data set there (`python -m tests.benchmarks.data`, --users/--rows);
each run then adds --batch users of --cause (INSERT ... SELECT generate_series, new ids every run), so
the batch holds them plus the data set's own users of that cause that earlier runs did not fix.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import psycopg
from sqlalchemy import event

from core.domain.approvals import RequestStatus
from core.domain.fixes import Cause
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from core.store.migrate import migrate
from tests.benchmarks.data import describe, ensure_database, generate, psql_url
from tests.support.fix_data import seed_cause
from tests.support.fixes import APPROVER, ASKER

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tokens_bench_fix"

# The profile correction of failed-charged users as an operator would write it: used and remaining set
# from the ledger's successful usage, in one statement.
RAW_CORRECTION_SQL = """
UPDATE user_profiles p
SET vibe_assistant_tokens_remaining = p.vibe_assistant_tokens_remaining + (p.vibe_assistant_tokens_used - l.used),
    vibe_assistant_tokens_used = l.used
FROM (SELECT user_id, coalesce(sum(tokens_used) FILTER (WHERE success
                  AND action_type NOT IN ('admin_grant', 'admin_deduct')), 0) AS used
      FROM token_usage WHERE user_id = ANY(%(ids)s) GROUP BY user_id) l
WHERE p.user_id = l.user_id
"""

# The reversal of duplicated usage: for each twin seconds after its original, a row with the tokens and
# cost negated, naming the row it reverses.
RAW_REVERSAL_SQL = """
INSERT INTO token_usage (user_id, action_type, model_used, tokens_used, cost_estimate, success, metadata, created_at)
SELECT user_id, action_type, model_used, -tokens_used, -cost_estimate, true,
       jsonb_build_object('reverses', id::text, 'fix', 'duplicates'), now()
FROM (SELECT t.*, created_at - lag(created_at) OVER (
          PARTITION BY user_id, success, action_type, model_used, tokens_used, input_tokens, output_tokens
          ORDER BY created_at, id) <= interval '5 seconds' AS twin
      FROM token_usage t
      WHERE user_id = ANY(%(ids)s) AND success AND action_type NOT IN ('admin_grant', 'admin_deduct')) d
WHERE twin
"""

# Verification: the users whose used total still differs from the ledger after the change.
RAW_VERIFY_SQL = """
SELECT count(*) FROM user_profiles p
JOIN (SELECT user_id, coalesce(sum(tokens_used) FILTER (WHERE success
          AND action_type NOT IN ('admin_grant', 'admin_deduct')), 0) AS used
      FROM token_usage WHERE user_id = ANY(%(ids)s) GROUP BY user_id) l ON l.user_id = p.user_id
WHERE p.vibe_assistant_tokens_used <> l.used
"""

RAW_SQL = {Cause.FAILED_CHARGED: RAW_CORRECTION_SQL, Cause.DUPLICATES: RAW_REVERSAL_SQL}


def raw_fix(url: str, cause: Cause, ids: list[str]) -> tuple[float, float, int]:
    """The same changes in one statement and their verification, rolled back: (seconds, seconds, rows)."""
    with psycopg.connect(psql_url(url)) as conn:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute(RAW_SQL[cause], {"ids": ids})
            changed = cur.rowcount
            applied = time.perf_counter() - started
            cur.execute(RAW_VERIFY_SQL, {"ids": ids})
            cur.fetchall()
            verified = time.perf_counter() - started - applied
        conn.rollback()
    return applied, verified, changed


def apply_all(url: str, settings: Settings, request_id: int, workers: int) -> int:
    """`workers` appliers at once, each with its own engine, as several bot processes would be; returns
    how many SQL statements they sent (commits not counted)."""
    sent: list[int] = []

    def work() -> None:
        engine = make_engine(url, pool_size=1)
        count = [0]
        event.listen(engine, "before_cursor_execute", lambda *_: count.__setitem__(0, count[0] + 1))
        try:
            TokensService(settings, engine).apply_fix(request_id, limit=1_000_000)
        finally:
            engine.dispose()
            sent.append(count[0])

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--users", type=int, default=20_000, help="data set users, when it is loaded")
    parser.add_argument("--rows", type=int, default=1_000_000, help="data set ledger rows, when it is loaded")
    parser.add_argument("--batch", type=int, default=3_000, help="users of the cause added this run")
    parser.add_argument("--cause", choices=[c.value for c in RAW_SQL], default=Cause.FAILED_CHARGED.value)
    parser.add_argument("--workers", type=int, default=1, help="appliers at once (default 1)")
    args = parser.parse_args()
    cause = Cause(args.cause)
    ensure_database(args.url)
    data = describe(args.url)
    if data is None:
        started = time.perf_counter()
        data = generate(args.url, args.users, args.rows)
        print(f"loaded the data set in {time.perf_counter() - started:.1f} s")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=args.url,
        tokens_admins=[ASKER.slack_id, APPROVER.slack_id],
        tokens_approvals_channel="CBENCH",
    )
    engine = make_engine(args.url)
    migrate(engine, settings.tokens_schema)
    started = time.perf_counter()
    with engine.begin() as conn:
        ids = seed_cause(conn, cause.value, f"bench-{uuid.uuid4().hex[:8]}-", args.batch)
    print(f"data: {data.users:,} users, {data.rows:,} ledger rows in {data.database}")
    print(f"added {len(ids):,} {cause.value} users in {time.perf_counter() - started:.2f} s\n")

    raw_apply, raw_verify, raw_rows = raw_fix(args.url, cause, ids)

    service = TokensService(settings, engine)
    started = time.perf_counter()
    request = service.propose_batch(ASKER, cause, 0)
    proposed = time.perf_counter() - started
    assert request.fix is not None
    items = request.fix.users
    approved_at = time.perf_counter()
    decision = service.approve(APPROVER, request.id)
    assert decision.outcome is RequestStatus.APPLYING, decision.outcome
    statements = apply_all(args.url, settings, request.id, args.workers)
    applied_at = time.perf_counter()
    closed, progress = service.finish_fix(request.id)
    verified_at = time.perf_counter()
    assert closed is not None and progress.done
    engine.dispose()

    apply_s, verify_s, total_s = applied_at - approved_at, verified_at - applied_at, verified_at - approved_at
    print(
        f"batch: {items:,} items ({request.fix.ledger_rows:,} ledger rows planned), proposed in {proposed:.2f} s"
    )
    print(
        f"outcome: {progress.applied:,} applied, {progress.stale:,} stale, {progress.failed:,} failed;"
        f" {progress.reconciled:,} reconciled, {progress.differing:,} still differing,"
        f" {progress.unverified:,} unverified\n"
    )
    print(f"{'':<34} {'bot':>10} {'raw SQL':>10}")
    print(f"{'apply (s)':<34} {apply_s:10.2f} {raw_apply:10.3f}")
    print(f"{'verify (s)':<34} {verify_s:10.2f} {raw_verify:10.3f}")
    print(f"{'items per second':<34} {items / apply_s:10.1f} {len(ids) / raw_apply:10.1f}")
    print(f"{'approval → verification summary (s)':<34} {total_s:10.2f} {raw_apply + raw_verify:10.3f}")
    print(f"SQL statements per item applied: {statements / items:.1f} (one transaction each)")
    print(f"raw SQL changed {raw_rows:,} rows for the {len(ids):,} added users (rolled back)")
    print(
        f"target: a 3,000-user batch applied and verified in under 60 s: {'met' if total_s < 60 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
