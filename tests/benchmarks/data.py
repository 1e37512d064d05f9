"""Benchmark data: a large, realistic copy of the product's tables, generated entirely inside PostgreSQL.

The benchmarks compare tokens-bot with the reconciliation guide's raw SQL on the same data, so the data
has to look like a real product's: a skewed ledger (a few heavy users with thousands of rows, most users
with tens, some with none), the product's action types, models, token counts and per-model costs, ~2%
failed operations, rare duplicates, an old price on the oldest rows, and cached balances that agree with
the ledger for most users but drift for ~3% of them in the ways the guide describes (failed operations
charged, grants never logged, usage before tracking began, wrong cost, negative balances).

Speed matters as much as realism (100k users and 5M ledger rows in well under five minutes on two
cores), so nothing is generated row by row in Python: each table is filled by one ``INSERT ... SELECT``
over ``generate_series``, every "random" choice is a hash of the row's coordinates
(``hashint8extended``), and primary keys and indexes are built only after the load. The same seed
therefore gives the same ids, row counts, amounts and drift on every run; timestamps are relative to the
hour of the load (the ledger covers the last ~12 months).

    python -m tests.benchmarks.data --url postgresql://postgres@127.0.0.1:5432/tokens_bench \\
        --users 100000 --rows 5000000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import IntEnum
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger("tokens_bench")

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "demo" / "product_schema.sql"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tokens_bench"
PRODUCT_TABLES = (("public", "token_usage"), ("public", "user_profiles"), ("auth", "users"))
BENCH_COMMENT_PREFIX = "tokens-bench "

TIER_GRANTS = {"annual": 5_000_000, "monthly": 600_000}
TRIAL_GRANTS = (500_000, 1_000_000, 2_000_000)  # initial grants of users without a membership tier
LOW_BALANCE = 10_000

# Cents per 1,000 tokens (input, output): today's prices, and the ones charged before the price change.
PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4": (Decimal("3"), Decimal("6")),
    "gpt-4o": (Decimal("0.25"), Decimal("1")),
    "gpt-5-mini": (Decimal("0.025"), Decimal("0.2")),
    "dall-e-3": (Decimal("0"), Decimal("4")),
    "tts-1": (Decimal("1.5"), Decimal("0")),
    "whisper-1": (Decimal("0.6"), Decimal("0")),
}
OLD_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    **PRICES,
    "gpt-4o": (Decimal("0.5"), Decimal("1.5")),
    "gpt-5-mini": (Decimal("0.05"), Decimal("0.4")),
    "dall-e-3": (Decimal("0"), Decimal("8")),
}
PRICE_CHANGE_DAYS_AGO = 300  # rows older than this were costed with OLD_PRICES: the guide's "cost drift"

HEAVY_USERS_MAX = 20  # one heavy user per 5,000 users, at most this many
HEAVY_ROWS = (5_000, 20_000)  # row counts of the lightest and heaviest heavy user at full size
HEAVY_ROW_SHARE = 0.05  # heavy users never hold more than this share of the ledger
ZERO_ROW_SHARE = 0.03  # users with a profile but no ledger rows
ROWS_SIGMA = 0.5  # log-normal spread of the other users' row counts
TIER_SHARES = (0.35, 0.45)  # annual, monthly; the rest have no tier
LOGGED_INITIAL_SHARE = 0.90  # tiered users whose initial grant is an admin_grant row
TIGHT_SHARE = 0.40  # users without a tier whose grants barely cover their usage (the low-balance list)
TOPUP_EVERY_MIN = 150  # a user gets a top-up grant every max(150, rows / 12) rows
FAILURE_RATE = 0.02
DUPLICATE_RATE = 0.002
DEDUCT_RATE = 0.0005
DRIFT_SHARE = 0.024  # users with ledger rows whose cached balance drifted
NEGATIVE_SHARE = 0.001  # users whose cached balance went negative
PRE_TRACKING_SHARE = 0.2  # users without ledger rows whose profile shows usage anyway

ERRORS = (
    "OpenAI API error: request timed out after 60s",
    "Rate limit exceeded (429): retry after 20s",
    "Upstream provider returned 502 Bad Gateway",
    "Content policy violation: request rejected",
    "Context length exceeded: 128000 token limit",
)
DEDUCT_REASONS = ("refund reversal", "abuse cleanup", "duplicate grant correction")


@dataclass(frozen=True)
class Operation:
    """One kind of consumption row: an action on a model, its share of all operations, its token ranges."""

    action: str
    model: str
    share: float
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]


# Shares are percentages of consumption rows; chat is by far the most common operation.
OPERATIONS: tuple[Operation, ...] = (
    Operation("chat_conversation", "gpt-4o", 22.0, (200, 3_000), (50, 1_500)),
    Operation("chat_conversation", "gpt-5-mini", 17.6, (200, 3_000), (50, 1_500)),
    Operation("chat_conversation", "gpt-4", 4.4, (200, 3_000), (50, 1_500)),
    Operation("assessment_scoring", "gpt-5-mini", 4.2, (800, 2_500), (100, 400)),
    Operation("assessment_scoring", "gpt-4o", 2.8, (800, 2_500), (100, 400)),
    Operation("vision_generation", "gpt-4o", 3.6, (1_500, 4_000), (1_500, 6_000)),
    Operation("vision_generation", "gpt-4", 2.4, (1_500, 4_000), (1_500, 6_000)),
    Operation("vision_refinement", "gpt-4o", 4.8, (1_000, 4_000), (500, 2_500)),
    Operation("vision_refinement", "gpt-5-mini", 3.2, (1_000, 4_000), (500, 2_500)),
    Operation("blueprint_generation", "gpt-4o", 2.8, (2_000, 5_000), (2_000, 8_000)),
    Operation("blueprint_generation", "gpt-4", 1.2, (2_000, 5_000), (2_000, 8_000)),
    Operation("audio_generation", "tts-1", 4.2, (300, 4_000), (0, 0)),
    Operation("audio_generation", "whisper-1", 1.8, (500, 3_000), (0, 0)),
    Operation("image_generation", "dall-e-3", 4.0, (0, 0), (1_000, 4_000)),
    Operation("life_vision_category_summary", "gpt-5-mini", 3.0, (1_000, 3_000), (200, 800)),
    Operation("life_vision_category_summary", "gpt-4o", 3.0, (1_000, 3_000), (200, 800)),
    Operation("life_vision_master_assembly", "gpt-4", 1.0, (4_000, 10_000), (2_000, 6_000)),
    Operation("life_vision_master_assembly", "gpt-4o", 1.0, (4_000, 10_000), (2_000, 6_000)),
    Operation("prompt_suggestions", "gpt-5-mini", 8.0, (100, 600), (50, 300)),
    Operation("frequency_flip", "gpt-4o", 2.5, (200, 1_200), (100, 600)),
    Operation("frequency_flip", "gpt-5-mini", 2.5, (200, 1_200), (100, 600)),
)

CONSUMPTION = "action_type NOT IN ('admin_grant', 'admin_deduct')"


@dataclass(frozen=True)
class BenchData:
    """What a benchmark needs to know about the loaded data set: sizes, the users to look at, the cost."""

    database: str
    seed: int
    users: int
    rows: int
    profiles: int
    typical_user_id: str
    typical_user_email: str
    typical_user_rows: int
    heavy_user_id: str
    heavy_user_email: str
    heavy_user_rows: int
    heavy_users: int
    zero_row_users: int
    drifted_users: int
    low_balance_users: int
    negative_balance_users: int
    elapsed_seconds: float
    timings: dict[str, float] = field(default_factory=dict)


class _Stream(IntEnum):
    """Independent pseudo-random streams: the same key hashed in two streams gives unrelated values."""

    USER_HEAVY = 1
    USER_ZERO = 2
    USER_TIER = 3
    USER_INITIAL = 4
    USER_TIGHT = 5
    USER_TRIAL = 6
    USER_RESERVE = 7
    USER_START = 8
    USER_SIGNUP = 9
    USER_GAUSS_A = 10
    USER_GAUSS_B = 11
    USER_DRIFT = 12
    USER_DRIFT_KIND = 13
    USER_DRIFT_AMOUNT = 14
    ROW_ID_A = 20
    ROW_ID_B = 21
    ROW_DEDUCT = 22
    ROW_DEDUCT_AMOUNT = 23
    ROW_DEDUCT_REASON = 24
    ROW_DUPLICATE = 25
    ROW_DUPLICATE_SHARED = 26
    ROW_DUPLICATE_DELAY = 27
    ROW_OPERATION = 28
    ROW_INPUT = 29
    ROW_OUTPUT = 30
    ROW_FAILURE = 31
    ROW_ERROR = 32
    ROW_TIME = 33
    ROW_REQUEST = 34


class _Hash:
    """SQL expressions for deterministic pseudo-random values, keyed by a bigint expression and a stream.

    ``hashint8extended`` is built in, immutable and fast, so a row's values depend only on its key,
    never on plan shape, parallelism or row order the way ``random()`` after ``setseed()`` would.
    """

    _MASK53 = (1 << 53) - 1

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def int8(self, key: str, stream: _Stream) -> str:
        return f"hashint8extended(({key})::int8, {self._seed * 1000 + int(stream)})"

    def unit(self, key: str, stream: _Stream) -> str:
        """A float8 uniform in [0, 1): the low 53 bits of the hash, exactly representable."""
        return f"(({self.int8(key, stream)} & {self._MASK53})::float8 / {float(1 << 53)!r})"

    def hex(self, key: str, stream: _Stream) -> str:
        return f"lpad(to_hex({self.int8(key, stream)}), 16, '0')"


def psql_url(url: str) -> str:
    """Return the URL psycopg (libpq) accepts for a database URL as users and SQLAlchemy write it.

    ``postgres://`` and SQLAlchemy's driver-qualified ``postgresql+psycopg://`` are rewritten to plain
    ``postgresql://``; anything that is not a PostgreSQL URL is refused early with a clear message.
    """
    match = re.match(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://", url)
    if match is None:
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host:port/dbname)")
    return "postgresql://" + url[match.end() :]


def database_name(url: str) -> str:
    """The database a URL names; required, since the generator drops and recreates tables in it."""
    name = conninfo_to_dict(psql_url(url)).get("dbname")
    if not name:
        raise ValueError(f"the URL must name a database: {url!r}")
    return str(name)


def ensure_database(url: str) -> bool:
    """Create the URL's database if it does not exist (via the server's ``postgres`` database).

    Returns whether it was created. CREATE DATABASE cannot run in a transaction, hence autocommit.
    """
    name = database_name(url)
    admin = make_conninfo(psql_url(url), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def product_ddl(path: Path = SCHEMA_FILE) -> tuple[list[str], list[str]]:
    """Split the product DDL into (schema and table statements, CREATE INDEX statements).

    The indexes are run after the load: building a B-tree once over sorted data is far cheaper than
    maintaining it row by row.
    """
    text = re.sub(r"--[^\n]*", "", path.read_text())
    statements = [s.strip() for s in text.split(";") if s.strip()]
    indexes = [s for s in statements if re.match(r"CREATE\s+(UNIQUE\s+)?INDEX", s, re.IGNORECASE)]
    return [s for s in statements if s not in indexes], indexes


def generate(url: str, users: int, rows: int, seed: int = 1) -> BenchData:
    """Create the database if needed, recreate the product tables and fill them; return what was loaded.

    ``rows`` is the exact number of ``token_usage`` rows. Everything from dropping the old tables to
    the drift runs in one transaction, so a failed load leaves the previous tables as they were; the
    indexes and VACUUM ANALYZE follow.
    """
    if not 10 <= users < 1 << 31 or not 1 <= rows < 1 << 31:
        # Row numbers are hash keys and must stay below 2**32 (see _row_key).
        raise ValueError("users must be between 10 and 2**31, rows between 1 and 2**31")
    if not 0 <= seed < 1 << 40:
        raise ValueError("seed must be between 0 and 2**40")
    conninfo = psql_url(url)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _step("database", timings):
        ensure_database(conninfo)
    with psycopg.connect(conninfo, autocommit=False) as conn:
        _tune_session(conn)
        anchor = conn.execute("SELECT date_trunc('hour', now())").fetchone()
        assert anchor is not None
        now: datetime = anchor[0]
        rand = _Hash(seed)
        with _step("schema", timings):
            table_ddl, index_ddl = product_ddl()
            constraints = _recreate_tables(conn, table_ddl)
        with _step("plan", timings):
            conn.execute(_plan_sql(rand, users, rows, seed, now))
        with _step("auth.users", timings):
            conn.execute(AUTH_USERS_SQL)
        with _step("token_usage", timings):
            conn.execute(_ledger_sql(rand, now - timedelta(days=PRICE_CHANGE_DAYS_AGO)))
        with _step("top-up grants", timings):
            conn.execute(_grants_sql(rand))
        with _step("user_profiles", timings):
            conn.execute(_profiles_sql())
        with _step("drift", timings):
            conn.execute(_drift_sql())
        conn.commit()
        with _step("indexes", timings):
            _build_indexes(conn, constraints, index_ddl)
        summary = _summarize(conn, seed)
        conn.commit()
        conn.autocommit = True
        with _step("vacuum analyze", timings):
            # Sets hint bits and the visibility map now, so benchmarks get index-only scans and do not
            # pay for the first reads of freshly loaded pages.
            for schema, table in PRODUCT_TABLES:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
        data = replace(
            summary, elapsed_seconds=round(time.perf_counter() - started, 2), timings=dict(timings)
        )
        # Remembered in the database itself, so benchmarks can find the users without regenerating.
        conn.execute(
            sql.SQL("COMMENT ON TABLE public.token_usage IS {}").format(
                sql.Literal(BENCH_COMMENT_PREFIX + json.dumps(asdict(data)))
            )
        )
    return data


def describe(url: str) -> BenchData | None:
    """What the last ``generate`` loaded into this database, read back from the ledger's table comment.

    Lets benchmarks find the typical and heavy users without regenerating; None if nothing was loaded.
    """
    with psycopg.connect(psql_url(url)) as conn:
        row = conn.execute("SELECT obj_description(to_regclass('public.token_usage'), 'pg_class')").fetchone()
    if row is None or not row[0] or not str(row[0]).startswith(BENCH_COMMENT_PREFIX):
        return None
    return BenchData(**json.loads(str(row[0])[len(BENCH_COMMENT_PREFIX) :]))


@contextmanager
def _step(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time one phase of the load and log it, so a slow run shows which phase to look at."""
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 2)
    log.info("%-15s %7.2fs", name, timings[name])


def _tune_session(conn: psycopg.Connection) -> None:
    """Session settings for a bulk load: memory for the aggregates and index builds, no commit waits."""
    for setting in (
        "SET work_mem = '256MB'",
        "SET maintenance_work_mem = '1GB'",
        "SET synchronous_commit = off",
        "SET jit = off",  # compiling the wide row expressions costs more than it saves here
    ):
        conn.execute(setting)


def _recreate_tables(conn: psycopg.Connection, table_ddl: list[str]) -> list[tuple[str, str, str, str]]:
    """Drop the product tables, run the DDL's table statements, and drop their key constraints for now.

    Returns the dropped primary-key and unique constraints as (schema, table, name, definition), to be
    restored after the load. CASCADE: this is a disposable benchmark database.
    """
    tables = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in PRODUCT_TABLES)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(tables))
    for statement in table_ddl:
        conn.execute(statement)  # trusted DDL from the repository
    constraints = conn.execute(
        """
        SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid)
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE con.contype IN ('p', 'u')
          AND (n.nspname, c.relname)
              IN (('public', 'token_usage'), ('public', 'user_profiles'), ('auth', 'users'))
        ORDER BY n.nspname, c.relname, con.conname
        """
    ).fetchall()
    for schema, table, name, _ in constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(schema, table), sql.Identifier(name)
            )
        )
    return [(str(s), str(t), str(n), str(d)) for s, t, n, d in constraints]


def _build_indexes(
    conn: psycopg.Connection, constraints: list[tuple[str, str, str, str]], index_ddl: list[str]
) -> None:
    """Restore the key constraints, then run the DDL's CREATE INDEX statements, each in its own commit."""
    for schema, table, name, definition in constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(schema, table),
                sql.Identifier(name),
                sql.SQL(definition),
            )
        )
        conn.commit()
    for statement in index_ddl:
        conn.execute(statement)  # trusted DDL from the repository
        conn.commit()


def _text_array(values: Sequence[str]) -> str:
    """A parenthesized text array constant, ready to subscript."""
    return "(ARRAY[" + ", ".join(sql.Literal(v).as_string() for v in values) + "]::text[])"


def _number_array(values: Sequence[object], pg_type: str) -> str:
    """A parenthesized numeric array constant, ready to subscript."""
    return "(ARRAY[" + ", ".join(str(v) for v in values) + f"]::{pg_type}[])"


def _plan_sql(rand: _Hash, users: int, rows: int, seed: int, anchor: datetime) -> str:
    """One row per user with everything the ledger and profile statements derive from: the plan.

    Row counts: heavy users get 5k..20k rows (scaled down so they hold at most 5% of a small ledger),
    zero-row users none, everyone else a log-normal share of the rest (median 43 at 5M rows / 100k
    users). Cumulative rounding makes the counts add up to exactly ``rows``.
    """
    heavy_users = max(1, min(HEAVY_USERS_MAX, users // 5_000))
    heavy_rows = min(heavy_users * sum(HEAVY_ROWS) // 2, round(rows * HEAVY_ROW_SHARE))
    normal_rows = rows - heavy_rows
    annual, monthly = TIER_SHARES
    at = sql.Literal(anchor).as_string()
    u = rand.unit
    return f"""
    CREATE TEMP TABLE bench_users AS
    WITH drawn AS (
        SELECT n,
               md5('tokens-bench:{seed}:' || n)::uuid AS id,
               {u("n", _Stream.USER_HEAVY)} AS u_heavy,
               {u("n", _Stream.USER_ZERO)} AS u_zero,
               {u("n", _Stream.USER_TIER)} AS u_tier,
               {u("n", _Stream.USER_INITIAL)} AS u_initial,
               {u("n", _Stream.USER_TIGHT)} AS u_tight,
               {u("n", _Stream.USER_TRIAL)} AS u_trial,
               {u("n", _Stream.USER_RESERVE)} AS u_reserve,
               {u("n", _Stream.USER_START)} AS u_start,
               {u("n", _Stream.USER_SIGNUP)} AS u_signup,
               {u("n", _Stream.USER_DRIFT)} AS u_drift,
               {u("n", _Stream.USER_DRIFT_KIND)} AS u_kind,
               {u("n", _Stream.USER_DRIFT_AMOUNT)} AS u_amount,
               sqrt(-2 * ln(1 - {u("n", _Stream.USER_GAUSS_A)}))
                   * cos(2 * pi() * {u("n", _Stream.USER_GAUSS_B)}) AS z
        FROM generate_series(1, {users}) AS n
    ), ranked AS (
        SELECT d.*, row_number() OVER (ORDER BY u_heavy, n) AS heavy_rank FROM drawn d
    ), grouped AS (
        SELECT r.*,
               CASE WHEN heavy_rank <= {heavy_users} THEN 'heavy'
                    WHEN u_zero < {ZERO_ROW_SHARE} THEN 'zero' ELSE 'normal' END AS grp,
               CASE WHEN heavy_rank <= {heavy_users}
                    THEN 1 + 3.0 * (heavy_rank - 1) / greatest({heavy_users} - 1, 1)
                    ELSE exp({ROWS_SIGMA} * z) END::float8 AS weight,
               CASE WHEN u_tier < {annual} THEN 'annual'
                    WHEN u_tier < {annual + monthly} THEN 'monthly' END AS tier
        FROM ranked r
    ), allotted AS (
        SELECT g.*,
               CASE grp WHEN 'heavy' THEN {heavy_rows} WHEN 'normal' THEN {normal_rows} ELSE 0
               END AS grp_rows,
               sum(weight) OVER (PARTITION BY grp ORDER BY n) AS cum_weight,
               sum(weight) OVER (PARTITION BY grp) AS grp_weight
        FROM grouped g
    ), sized AS (
        SELECT a.*,
               (round(grp_rows * cum_weight / grp_weight)
                - round(grp_rows * (cum_weight - weight) / grp_weight))::int AS n_rows,
               CASE WHEN grp = 'heavy' THEN 360 ELSE 7 + 358 * u_start END AS days
        FROM allotted a
    ), classified AS (
        SELECT s.*,
               -- Users with top-ups always log their initial grant: were it implied by the tier, a
               -- tier-sized renewal would be taken for it.
               n_rows > 0 AND (tier IS NULL OR n_rows >= {TOPUP_EVERY_MIN}
                               OR u_initial < {LOGGED_INITIAL_SHARE}) AS has_initial,
               n_rows > 0 AND grp <> 'heavy' AND tier IS NULL AND u_tight < {TIGHT_SHARE} AS tight
        FROM sized s
    )
    SELECT n, id, 'user-' || n || '@bench.example' AS email, tier, grp = 'heavy' AS heavy, n_rows,
           sum(n_rows) OVER (ORDER BY n) - n_rows AS first_row, has_initial, tight,
           CASE tier WHEN 'annual' THEN {TIER_GRANTS["annual"]} WHEN 'monthly' THEN {TIER_GRANTS["monthly"]}
                ELSE {_number_array(TRIAL_GRANTS, "int8")}[1 + floor(u_trial * {len(TRIAL_GRANTS)})::int]
           END::int8 AS base_grant,
           (CASE WHEN tight THEN 500 + floor(u_reserve * 24500)
                 ELSE 20000 + floor(u_reserve * 480000) END)::int8 AS reserve,
           greatest({TOPUP_EVERY_MIN}, n_rows / 12) AS topup_every,
           {at} - days * interval '1 day' AS start_at,
           days * 86400.0 AS span_secs,
           {at} - (days + 1 + 60 * u_signup) * interval '1 day' AS signed_up_at,
           CASE WHEN n_rows = 0 THEN CASE WHEN u_drift < {PRE_TRACKING_SHARE} THEN 'pre_tracking' END
                WHEN u_drift < {DRIFT_SHARE} THEN
                    CASE WHEN u_kind < 0.30 THEN 'failed_charged' WHEN u_kind < 0.50 THEN 'unlogged_grant'
                         WHEN u_kind < 0.75 THEN 'overcharged' WHEN u_kind < 0.90 THEN 'undercounted'
                         ELSE 'cost' END
                WHEN u_drift < {DRIFT_SHARE + NEGATIVE_SHARE} THEN 'negative'
           END AS drift,
           (1000 + floor(u_amount * 79000))::int8 AS drift_amount
    FROM classified
    """


def _slot_sql(rand: _Hash, k: str, x: str) -> str:
    """What ledger slot ``k`` of a user holds: the initial grant, a top-up, a deduction, or an operation."""
    return f"""CASE WHEN ({k}) = 1 AND has_initial THEN 'initial'
                WHEN mod({k}, topup_every) = 0 THEN 'topup'
                WHEN {rand.unit(x, _Stream.ROW_DEDUCT)} < {DEDUCT_RATE} THEN 'deduct'
                ELSE 'use' END"""


def _time_sql(rand: _Hash, k: str, x: str) -> str:
    """Slot ``k``'s timestamp: a jittered point in its own slice of the user's span, so times increase."""
    return (
        f"start_at + (span_secs * ((({k}) - 1 + 0.9 * {rand.unit(x, _Stream.ROW_TIME)}) / n_rows))"
        " * interval '1 second'"
    )


def _row_key(first_row: str, k: str) -> str:
    """A ledger slot's hash key: its global row number, consecutive within a user (slot k-1 is key-1).

    It must stay below 2**32: ``hashint8extended`` folds a bigint to 32 bits before hashing, so keys
    that differ only above bit 31 would collide.
    """
    return f"({first_row})::int8 + ({k})"


def _row_id_sql(rand: _Hash, x: str) -> str:
    return f"({rand.hex(x, _Stream.ROW_ID_A)} || {rand.hex(x, _Stream.ROW_ID_B)})::uuid"


def _ledger_sql(rand: _Hash, price_change_at: datetime) -> str:
    """Every ledger row whose amount is known up front: operations, deductions, tier and trial grants.

    A duplicate copies the previous slot's operation (same action, model and tokens) and lands
    0.2-1.9 s after it; half of them also repeat its request id (logged twice) and half do not (the
    operation ran twice). Top-ups and the grants of tight users depend on the usage, so they are left
    to ``_grants_sql``. Each level is fenced with OFFSET 0 so its hash expressions run once per row.
    """
    u = rand.unit
    changed = sql.Literal(price_change_at).as_string()
    thresholds = [0.0]
    total = sum(op.share for op in OPERATIONS)
    for op in OPERATIONS[:-1]:
        thresholds.append(thresholds[-1] + op.share / total)
    ops = {
        "actions": _text_array([op.action for op in OPERATIONS]),
        "models": _text_array([op.model for op in OPERATIONS]),
        "in_min": _number_array([op.input_tokens[0] for op in OPERATIONS], "int8"),
        "in_span": _number_array([op.input_tokens[1] + 1 - op.input_tokens[0] for op in OPERATIONS], "int8"),
        "out_min": _number_array([op.output_tokens[0] for op in OPERATIONS], "int8"),
        "out_span": _number_array(
            [hi + 1 - lo for lo, hi in (op.output_tokens for op in OPERATIONS)], "int8"
        ),
        "price_in": _number_array([PRICES[op.model][0] for op in OPERATIONS], "numeric"),
        "price_out": _number_array([PRICES[op.model][1] for op in OPERATIONS], "numeric"),
        "old_in": _number_array([OLD_PRICES[op.model][0] for op in OPERATIONS], "numeric"),
        "old_out": _number_array([OLD_PRICES[op.model][1] for op in OPERATIONS], "numeric"),
        "thresholds": _number_array(thresholds, "float8"),
    }
    request_key = f"CASE WHEN dup AND {u('x', _Stream.ROW_DUPLICATE_SHARED)} < 0.5 THEN src ELSE x END"
    return f"""
    INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,
        output_tokens, cost_estimate, success, error_message, metadata, created_at)
    SELECT {_row_id_sql(rand, "x")},
           user_id,
           CASE slot WHEN 'use' THEN {ops["actions"]}[op] WHEN 'deduct' THEN 'admin_deduct'
                ELSE 'admin_grant' END,
           CASE WHEN slot = 'use' THEN {ops["models"]}[op] END,
           CASE slot WHEN 'use' THEN input_tokens + output_tokens WHEN 'deduct' THEN deduct_amount
                ELSE base_grant END,
           CASE WHEN slot = 'use' THEN input_tokens END,
           CASE WHEN slot = 'use' THEN output_tokens END,
           CASE WHEN slot = 'use'
                THEN round((input_tokens * price_in + output_tokens * price_out) / 1000, 4) ELSE 0 END,
           NOT failed,
           CASE WHEN failed THEN {_text_array(ERRORS)}[error] END,
           CASE slot
               WHEN 'use' THEN jsonb_build_object('request_id', request_id)
               WHEN 'deduct' THEN jsonb_build_object('request_id', request_id, 'admin', 'ops@bench.example',
                   'reason', {_text_array(DEDUCT_REASONS)}[reason])
               ELSE jsonb_build_object('request_id', request_id, 'admin', 'system', 'reason',
                   CASE tier WHEN 'annual' THEN 'initial grant: annual membership'
                             WHEN 'monthly' THEN 'initial grant: monthly membership'
                             ELSE 'initial grant: trial' END)
           END,
           created_at
    FROM (
        SELECT o.*,
               {ops["in_min"]}[op] + floor(u_in * {ops["in_span"]}[op])::int8 AS input_tokens,
               {ops["out_min"]}[op] + floor(u_out * {ops["out_span"]}[op])::int8 AS output_tokens,
               CASE WHEN created_at < {changed}
                    THEN {ops["old_in"]}[op] ELSE {ops["price_in"]}[op] END AS price_in,
               CASE WHEN created_at < {changed}
                    THEN {ops["old_out"]}[op] ELSE {ops["price_out"]}[op] END AS price_out
        FROM (
            SELECT s.user_id, s.tier, s.base_grant, s.slot, s.x, s.dup,
                   width_bucket({u("src", _Stream.ROW_OPERATION)}, {ops["thresholds"]}) AS op,
                   {u("src", _Stream.ROW_INPUT)} AS u_in,
                   {u("src", _Stream.ROW_OUTPUT)} AS u_out,
                   slot = 'use' AND {u("src", _Stream.ROW_FAILURE)} < {FAILURE_RATE} AS failed,
                   1 + floor({u("src", _Stream.ROW_ERROR)} * {len(ERRORS)})::int AS error,
                   1 + floor({u("x", _Stream.ROW_DEDUCT_REASON)} * {len(DEDUCT_REASONS)})::int AS reason,
                   (500 * (2 + floor({u("x", _Stream.ROW_DEDUCT_AMOUNT)} * 99)))::int8 AS deduct_amount,
                   'req_' || {rand.hex(request_key, _Stream.ROW_REQUEST)} AS request_id,
                   CASE WHEN dup
                        THEN {_time_sql(rand, "k - 1", "x - 1")}
                             + (0.2 + 1.7 * {u("x", _Stream.ROW_DUPLICATE_DELAY)}) * interval '1 second'
                        ELSE {_time_sql(rand, "k", "x")} END AS created_at
            FROM (
                SELECT r.*, CASE WHEN dup THEN x - 1 ELSE x END AS src
                FROM (
                    SELECT l.*,
                           slot = 'use' AND k > 1 AND {_slot_sql(rand, "k - 1", "x - 1")} = 'use'
                               AND {u("x", _Stream.ROW_DUPLICATE)} < {DUPLICATE_RATE} AS dup
                    FROM (
                        SELECT b.id AS user_id, b.tier, b.base_grant, b.tight, b.has_initial, b.topup_every,
                               b.start_at, b.span_secs, b.n_rows, k, {_row_key("b.first_row", "k")} AS x,
                               {_slot_sql(rand, "k", _row_key("b.first_row", "k"))} AS slot
                        FROM bench_users b CROSS JOIN LATERAL generate_series(1, b.n_rows) AS k
                        OFFSET 0
                    ) l
                    WHERE slot <> 'topup' AND NOT (slot = 'initial' AND tight)
                    OFFSET 0
                ) r
                OFFSET 0
            ) s
            OFFSET 0
        ) o
        OFFSET 0
    ) final
    """


def _grants_sql(rand: _Hash) -> str:
    """The grants whose amounts follow from the usage just loaded: top-ups and tight users' grants.

    A user with top-up slots gets grants sized so that the ledger ends ``reserve`` tokens above zero
    (monthly users renew 600k when they need nothing more); a tight user's grants leave 500..25k
    tokens, which is what fills the low-balance list. Only these users' ledger rows are aggregated.
    """
    return f"""
    WITH usage AS (
        SELECT t.user_id,
               coalesce(sum(t.tokens_used) FILTER (WHERE t.success AND t.{CONSUMPTION}), 0) AS used,
               coalesce(sum(t.tokens_used) FILTER (WHERE t.action_type = 'admin_deduct'), 0) AS deducts
        FROM public.token_usage t
        WHERE t.user_id IN (SELECT id FROM bench_users WHERE tight OR n_rows >= topup_every)
        GROUP BY t.user_id
    ), needs AS (
        SELECT b.*, coalesce(u.used, 0) + coalesce(u.deducts, 0) + b.reserve AS need,
               (b.n_rows / b.topup_every)::int8 AS topups
        FROM bench_users b LEFT JOIN usage u ON u.user_id = b.id
        WHERE b.tight OR b.n_rows >= b.topup_every
    ), amounts AS (
        SELECT n.*,
               CASE WHEN topups = 0 THEN 0
                    WHEN tight THEN floor(greatest(need - 250000, 0) / topups / 1000.0) * 1000
                    WHEN need > base_grant THEN ceil((need - base_grant) / topups / 1000.0) * 1000
                    WHEN tier = 'monthly' THEN {TIER_GRANTS["monthly"]}
                    ELSE 250000 END::int8 AS topup
        FROM needs n
    )
    INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,
        output_tokens, cost_estimate, success, error_message, metadata, created_at)
    SELECT {_row_id_sql(rand, "x")}, id, 'admin_grant', NULL,
           CASE WHEN k = 1 THEN need - topups * topup ELSE topup END, NULL, NULL, 0, true, NULL,
           jsonb_build_object('request_id', 'req_' || {rand.hex("x", _Stream.ROW_REQUEST)},
               'admin', 'ops@bench.example',
               'reason', CASE WHEN k = 1 THEN 'manual grant' WHEN tier = 'monthly' THEN 'monthly renewal'
                              ELSE 'top-up purchase' END),
           {_time_sql(rand, "k", "x")}
    FROM (
        SELECT a.*, s.k, {_row_key("a.first_row", "s.k")} AS x
        FROM amounts a
        CROSS JOIN LATERAL (
            SELECT 1 AS k WHERE a.tight
            UNION ALL
            SELECT g FROM generate_series(a.topup_every, a.n_rows, a.topup_every) AS g
        ) s
    ) slots
    """


AUTH_USERS_SQL = (
    "INSERT INTO auth.users (id, email, created_at) SELECT id, email, signed_up_at FROM bench_users"
)


def _profiles_sql() -> str:
    """Every user's cached balance, computed from the ledger in one aggregate: consistent by construction.

    used = successful consumption tokens; cost = their cost in dollars; remaining = the tier grant when
    no initial grant was logged, plus all grants, minus used and deductions.
    """
    return f"""
    INSERT INTO public.user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,
        vibe_assistant_tokens_used, vibe_assistant_total_cost, created_at, updated_at)
    SELECT b.id, b.tier,
           CASE WHEN b.tier IS NOT NULL AND NOT b.has_initial THEN b.base_grant ELSE 0 END
               + coalesce(l.grants, 0) - coalesce(l.used, 0) - coalesce(l.deducts, 0),
           coalesce(l.used, 0),
           round(coalesce(l.cost, 0) / 100, 2),
           b.signed_up_at,
           coalesce(l.last_at, b.signed_up_at)
    FROM bench_users b
    LEFT JOIN (
        SELECT user_id,
               sum(tokens_used) FILTER (WHERE success AND {CONSUMPTION}) AS used,
               sum(cost_estimate) FILTER (WHERE success AND {CONSUMPTION}) AS cost,
               sum(tokens_used) FILTER (WHERE action_type = 'admin_grant') AS grants,
               sum(tokens_used) FILTER (WHERE action_type = 'admin_deduct') AS deducts,
               max(created_at) AS last_at
        FROM public.token_usage
        GROUP BY user_id
    ) l ON l.user_id = b.id
    """


def _drift_sql() -> str:
    """Make the planned ~3% of profiles disagree with the ledger, one way per guide scenario.

    failed_charged: failed operations were deducted; unlogged_grant: a tier-sized grant never logged;
    overcharged: tokens deducted twice; undercounted: operations that never reached the counters;
    cost: the cached cost alone is wrong; negative: the balance went below zero; pre_tracking: usage
    before the ledger existed (profile shows usage, ledger has no rows).
    """
    return f"""
    UPDATE public.user_profiles p
    SET vibe_assistant_tokens_used = CASE d.drift
            WHEN 'failed_charged' THEN p.vibe_assistant_tokens_used + coalesce(f.tokens, d.drift_amount)
            WHEN 'overcharged' THEN p.vibe_assistant_tokens_used + d.drift_amount
            WHEN 'undercounted' THEN greatest(p.vibe_assistant_tokens_used - d.drift_amount, 0)
            WHEN 'pre_tracking' THEN 4 * d.drift_amount
            ELSE p.vibe_assistant_tokens_used END,
        vibe_assistant_tokens_remaining = CASE d.drift
            WHEN 'failed_charged' THEN p.vibe_assistant_tokens_remaining - coalesce(f.tokens, d.drift_amount)
            WHEN 'unlogged_grant' THEN p.vibe_assistant_tokens_remaining
                + CASE WHEN d.tier = 'annual' THEN {TIER_GRANTS["annual"]} ELSE {TIER_GRANTS["monthly"]} END
            WHEN 'overcharged' THEN p.vibe_assistant_tokens_remaining - d.drift_amount
            WHEN 'undercounted' THEN p.vibe_assistant_tokens_remaining + d.drift_amount
            WHEN 'pre_tracking' THEN greatest(p.vibe_assistant_tokens_remaining - 4 * d.drift_amount, 0)
            WHEN 'negative' THEN -(d.drift_amount / 4)
            ELSE p.vibe_assistant_tokens_remaining END,
        vibe_assistant_total_cost = CASE d.drift
            WHEN 'failed_charged' THEN p.vibe_assistant_total_cost + round(coalesce(f.cost, 0) / 100, 2)
            WHEN 'cost' THEN p.vibe_assistant_total_cost + round(d.drift_amount / 2000.0, 2)
            WHEN 'pre_tracking' THEN round(4 * d.drift_amount / 100000.0, 2)
            ELSE p.vibe_assistant_total_cost END
    FROM bench_users d
    LEFT JOIN (
        SELECT user_id, sum(tokens_used) AS tokens, sum(cost_estimate) AS cost
        FROM public.token_usage
        WHERE NOT success AND {CONSUMPTION}
          AND user_id IN (SELECT id FROM bench_users WHERE drift = 'failed_charged')
        GROUP BY user_id
    ) f ON f.user_id = d.id
    WHERE d.drift IS NOT NULL AND p.user_id = d.id
    """


def _summarize(conn: psycopg.Connection, seed: int) -> BenchData:
    """Pick the typical user and the heaviest one, and count what the benchmarks' lists will hold.

    The typical user has the median row count (or the next above it) and, when such a user exists, a
    plain history: no drift, a logged initial grant, not on the low-balance list.
    """
    one = conn.execute(
        f"""
        WITH median AS (
            SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n_rows) AS rows
            FROM bench_users WHERE n_rows > 0
        )
        SELECT
            (SELECT count(*) FROM bench_users),
            (SELECT count(*) FROM public.token_usage),
            (SELECT count(*) FROM public.user_profiles),
            t.id::text, t.email, t.n_rows, h.id::text, h.email, h.n_rows,
            (SELECT count(*) FROM bench_users WHERE heavy),
            (SELECT count(*) FROM bench_users WHERE n_rows = 0),
            (SELECT count(*) FROM bench_users WHERE drift IS NOT NULL),
            (SELECT count(*) FROM public.user_profiles WHERE vibe_assistant_tokens_remaining < {LOW_BALANCE}),
            (SELECT count(*) FROM public.user_profiles WHERE vibe_assistant_tokens_remaining < 0),
            current_database()
        FROM median m
        CROSS JOIN LATERAL (
            SELECT id, email, n_rows FROM bench_users
            WHERE n_rows >= m.rows
            ORDER BY (drift IS NULL AND has_initial AND NOT tight) DESC, n_rows, n LIMIT 1
        ) t
        CROSS JOIN LATERAL (SELECT id, email, n_rows FROM bench_users ORDER BY n_rows DESC, n LIMIT 1) h
        """
    ).fetchone()
    assert one is not None
    return BenchData(
        database=str(one[14]),
        seed=seed,
        users=one[0],
        rows=one[1],
        profiles=one[2],
        typical_user_id=one[3],
        typical_user_email=one[4],
        typical_user_rows=one[5],
        heavy_user_id=one[6],
        heavy_user_email=one[7],
        heavy_user_rows=one[8],
        heavy_users=one[9],
        zero_row_users=one[10],
        drifted_users=one[11],
        low_balance_users=one[12],
        negative_balance_users=one[13],
        elapsed_seconds=0.0,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate the data set and print what was loaded (as JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.data", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database to (re)fill (default {DEFAULT_URL})")
    parser.add_argument("--users", type=int, default=100_000, help="number of users (default 100000)")
    parser.add_argument("--rows", type=int, default=5_000_000, help="token_usage rows (default 5000000)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same data (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    data = generate(args.url, args.users, args.rows, args.seed)
    if args.json:
        print(json.dumps(asdict(data), indent=2))
    else:
        for key, value in asdict(data).items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
