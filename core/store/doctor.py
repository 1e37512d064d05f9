"""`tokens-bot doctor`: what a database needs for the bot to stay fast, and whether it has it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from core.domain.reports import DoctorReport, IndexCheck
from core.settings import Settings, to_sqlalchemy_url
from core.store.catalog import inspect_product
from core.store.columns import Columns
from core.store.db import TRANSACTION_POOLER_PORT, unit_of_work
from core.store.doctor_product import count_action_types, explain_product, suggested_settings
from core.store.doctor_schema import count_odd_rows, explain_schema
from core.store.migrate import current_revision
from core.store.product import ProductShape


@dataclass(frozen=True)
class _Needed:
    table: str
    columns: tuple[str, ...]
    why: str
    create_sql: str


# Direction does not matter: a btree is read backwards as cheaply as forwards.
NEEDED_INDEXES = (
    _Needed(
        "public.token_usage",
        ("user_id", "created_at"),
        "/tokens check, burn rates and findings read one user's rows, newest first",
        "CREATE INDEX CONCURRENTLY token_usage_user_created_idx"
        " ON public.token_usage (user_id, created_at DESC);",
    ),
    _Needed(
        "public.token_usage",
        ("created_at",),
        "fleet scans and the digest read only the rows since the last `tokens-bot rollup`; without it they"
        " read the whole ledger (a BRIN index is a few pages on an append-only log; autosummarize has"
        " autovacuum summarize each filled range at once, so a scan never rereads a long unsummarized tail)",
        "CREATE INDEX CONCURRENTLY token_usage_created_brin ON public.token_usage USING brin (created_at)"
        " WITH (autosummarize = on);",
    ),
    _Needed(
        "public.user_profiles",
        ("user_id",),
        "every lookup of a profile, and the scan's join of profiles to the ledger",
        "ALTER TABLE public.user_profiles ADD PRIMARY KEY (user_id);",
    ),
    _Needed(
        "public.user_profiles",
        ("vibe_assistant_tokens_remaining",),
        "/tokens lowbalance reads the lowest balances first",
        "CREATE INDEX CONCURRENTLY user_profiles_remaining_idx"
        " ON public.user_profiles (vibe_assistant_tokens_remaining);",
    ),
    _Needed(
        "public.user_profiles",
        ("vibe_assistant_tokens_used",),
        "/tokens top reads the highest lifetime usage first",
        "CREATE INDEX CONCURRENTLY user_profiles_used_idx"
        " ON public.user_profiles (vibe_assistant_tokens_used DESC NULLS LAST);",
    ),
)
COUNTED_TABLES = ("public.user_profiles", "public.token_usage", "auth.users")

_INDEXES_SQL = """
SELECT i.relname AS name, array_agg(a.attname::text ORDER BY k.ord) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
WHERE x.indrelid = to_regclass(:table) AND x.indisvalid AND x.indpred IS NULL
GROUP BY i.relname
ORDER BY i.relname
"""


def diagnose_database(engine: Engine, url: str, settings: Settings) -> DoctorReport:
    """Read-only inspection: server, pooler, row estimates, the indexes the bot relies on."""
    sa_url = make_url(to_sqlalchemy_url(url))
    with unit_of_work(engine, read_only=True) as conn:
        facts = (
            conn.execute(
                text(
                    "SELECT version() AS version, inet_server_port() AS port, pg_is_in_recovery() AS recovery,"
                    " current_database() AS db"
                )
            )
            .mappings()
            .one()
        )
        estimates = {table: _row_estimate(conn, table) for table in COUNTED_TABLES}
        shape = inspect_product(conn, settings)
        indexes = [_check_index(conn, needed) for needed in NEEDED_INDEXES]
        if shape.email_source is not None:
            indexes.append(_check_email_index(conn, shape))
        schema_notes = explain_schema(shape, settings)
        readable = _bot_functions_exist(conn, settings) and not shape.missing
        odd_rows = count_odd_rows(conn, shape, settings) if readable else []
        action_types = count_action_types(conn, Columns.of(shape, settings)) if readable else []
        product_notes, suggested = explain_product(conn, shape, settings) if readable else ([], [])
        prepare_threshold = getattr(conn.connection.driver_connection, "prepare_threshold", None)
    return DoctorReport(
        database=str(facts["db"]),
        server_version=str(facts["version"]).split(" on ")[0],
        url_port=sa_url.port,
        server_port=facts["port"],
        pooler=_pooler(sa_url.host, sa_url.port, facts["port"]),
        prepared_statements_off=prepare_threshold is None,
        in_recovery=bool(facts["recovery"]),
        row_estimates=estimates,
        indexes=indexes,
        bot_schema_revision=None if facts["recovery"] else current_revision(engine, settings.tokens_schema),
        schema_notes=schema_notes,
        odd_rows=odd_rows,
        action_types=action_types,
        product_notes=product_notes,
        suggested=suggested_settings(action_types, settings) + suggested,
    )


def _check_email_index(conn: Connection, shape: ProductShape) -> IndexCheck:
    """Email lookups ignore letter case (and must see every user an email matches), so they need an
    index on lower(email); without one each lookup reads the whole email table."""
    src = shape.email_source
    assert src is not None
    present = conn.execute(
        text(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = to_regclass(:table) AND x.indisvalid AND x.indpred IS NULL"
            " AND pg_get_indexdef(x.indexrelid) ~* :definition LIMIT 1"
        ),
        {"table": shape.email_table, "definition": f'lower\\(\\(?"?{src.column}"?\\)?(::text)?\\)'},
    ).scalar_one_or_none()
    return IndexCheck(
        table=f"{src.schema_name}.{src.table}",
        columns=[f"lower({src.column})"],
        why="/tokens check <email> matches emails whatever their letter case, and must find every match",
        present=present,
        create_sql=f'CREATE INDEX CONCURRENTLY ON {shape.email_table} (lower("{src.column}"));',
    )


def _bot_functions_exist(conn: Connection, settings: Settings) -> bool:
    """Metadata kept as text is read with the bot's own function, which the migrations create."""
    return bool(
        conn.execute(
            text("SELECT to_regprocedure(:f) IS NOT NULL"),
            {"f": f'"{settings.tokens_schema}".jsonb_or_null(text)'},
        ).scalar_one()
    )


def _pooler(host: str | None, url_port: int | None, server_port: int | None) -> str | None:
    if url_port == TRANSACTION_POOLER_PORT:
        return f"port {TRANSACTION_POOLER_PORT} is Supabase's transaction pooler (Supavisor/pgbouncer)"
    if url_port and server_port and url_port != server_port:
        return (
            f"the URL says port {url_port} but the server listens on {server_port}:"
            " a proxy or pooler sits in between"
        )
    if host and "pooler" in host:
        return f"the host name {host} names a pooler"
    return None


def _row_estimate(conn: Connection, table: str) -> int | None:
    """The planner's estimate, free at any size; an exact count only where statistics were never taken."""
    estimate = conn.execute(
        text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar_one_or_none()
    if estimate is None:
        return None
    if estimate < 0:
        schema, name = table.split(".")
        return int(conn.execute(text(f'SELECT count(*) FROM "{schema}"."{name}"')).scalar_one())
    return int(estimate)


def _check_index(conn: Connection, needed: _Needed) -> IndexCheck:
    rows = conn.execute(text(_INDEXES_SQL), {"table": needed.table}).all()
    present = next(
        (row.name for row in rows if tuple(row.columns[: len(needed.columns)]) == needed.columns), None
    )
    return IndexCheck(
        table=needed.table,
        columns=list(needed.columns),
        why=needed.why,
        present=present,
        create_sql=needed.create_sql,
    )
