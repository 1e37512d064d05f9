"""Reading the product's shape from PostgreSQL's catalog, once: each table's columns, keys, CHECK lists,
enums and row security, the email table and the tier table."""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from core.settings import Settings, TierTable
from core.store.product import LEDGER, PROFILES, Column, ProductShape, Table

_COLUMNS_SQL = text(
    """
    SELECT a.attname AS name,
           format_type(a.atttypid, a.atttypmod) AS type,
           NOT a.attnotnull AS nullable,
           (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
           information_schema._pg_numeric_precision(a.atttypid, a.atttypmod) AS precision,
           information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) AS scale,
           ty.typtype = 'e' AS enum,
           (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
             WHERE e.enumtypid = a.atttypid) AS labels,
           (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
             WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) AS default_sql
    FROM pg_attribute a
    JOIN pg_type ty ON ty.oid = a.atttypid
    WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
    """
)

_TABLE_SQL = text(
    """
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'other' END
               AS kind,
           c.relrowsecurity
               AND NOT pg_has_role(c.relowner, 'USAGE')
               AND NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user) AS row_security
    FROM pg_class c WHERE c.oid = to_regclass(:table)
    """
)

_UNIQUE_SQL = text(
    """
    SELECT x.indisprimary AS primary_key,
           array_agg(a.attname::text ORDER BY k.ord) AS columns
    FROM pg_index x
    CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
    WHERE x.indrelid = to_regclass(:table) AND x.indisunique AND x.indisvalid AND x.indpred IS NULL
    GROUP BY x.indexrelid, x.indisprimary
    """
)

# The values a CHECK constraint of the form `col IN (...)` / `col = ANY (ARRAY[...])` allows.
_CHECKS_SQL = text(
    """
    SELECT a.attname AS name, pg_get_constraintdef(k.oid) AS definition
    FROM pg_constraint k
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
    WHERE k.conrelid = to_regclass(:table) AND k.contype = 'c' AND cardinality(k.conkey) = 1
    """
)


def read_table(conn: Connection, name: str) -> Table:
    qualified = f"public.{name}"
    found = conn.execute(_TABLE_SQL, {"table": qualified}).first()
    if found is None:
        return Table(name=name, kind="missing", columns=())
    checks: dict[str, tuple[str, ...]] = {}
    for row in conn.execute(_CHECKS_SQL, {"table": qualified}):
        values = _allowed_values(str(row.definition))
        if values is not None:
            checks[row.name] = values
    columns = tuple(
        Column(
            name=row.name,
            type=row.type,
            nullable=bool(row.nullable),
            has_default=bool(row.has_default),
            precision=row.precision,
            scale=row.scale,
            enum=bool(row.enum),
            # An enum allows its labels, as a CHECK list allows its values.
            check_values=tuple(row.labels) if row.labels else checks.get(row.name),
            default=row.default_sql,
        )
        for row in conn.execute(_COLUMNS_SQL, {"table": qualified})
    )
    keys = conn.execute(_UNIQUE_SQL, {"table": qualified}).all()
    return Table(
        name=name,
        kind=str(found.kind),
        columns=columns,
        row_security=bool(found.row_security),
        primary_key=next((tuple(k.columns) for k in keys if k.primary_key), ()),
        unique=tuple(tuple(k.columns) for k in keys),
    )


def _allowed_values(definition: str) -> tuple[str, ...] | None:
    """The quoted literals of a one-column `IN`/`= ANY (ARRAY[...])` check; None for any other check."""
    if " ANY " not in definition and " IN " not in definition:
        return None
    return tuple(value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", definition))


def tier_table(conn: Connection, settings: Settings) -> TierTable | None:
    """TOKENS_TIER_TABLE when the table has every column it names; doctor says so when it does not."""
    table = settings.tokens_tier_table
    if table is None:
        return None
    found = conn.execute(
        text(
            "SELECT count(DISTINCT a.attname) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(:table) AND a.attname = ANY(:names) AND NOT a.attisdropped"
        ),
        {"table": table.qualified, "names": [table.key, table.name, *table.amounts]},
    ).scalar_one()
    return table if found == len({table.key, table.name, *table.amounts}) else None


def inspect_product(conn: Connection, settings: Settings) -> ProductShape:
    """Read the product schema so every query uses only what exists, read the way core.store.columns says."""
    ledger = read_table(conn, LEDGER)
    profiles = read_table(conn, PROFILES)
    source = settings.email_source
    email = conn.execute(
        text(
            "SELECT max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = :i) AS id_type"
            " FROM pg_attribute a WHERE a.attrelid = to_regclass(:table) AND a.attname IN (:c, :i)"
            " AND NOT a.attisdropped HAVING count(*) = 2"
        ),
        {"table": f'"{source.schema_name}"."{source.table}"', "c": source.column, "i": source.id_column},
    ).first()
    return ProductShape(
        tier_table=tier_table(conn, settings),
        ledger=ledger,
        profiles=profiles,
        email_source=source if email else None,
        email_id_type=str(email.id_type) if email else None,
        tier_column=settings.tokens_tier_column if profiles.has(settings.tokens_tier_column) else None,
        bot_schema=settings.tokens_schema,
    )
