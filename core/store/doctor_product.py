"""`tokens-bot doctor`, the product's meaning: which action types the ledger holds and how the bot reads
them, which look misread, the cost unit, resets, profile versions and tiers, with the settings that
would fix what looks wrong. Evidence only: nothing here changes a setting by itself."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, text

from core.domain.reports import ActionTypeCount, SchemaNote
from core.settings import Settings
from core.store.columns import COST, Columns, literal
from core.store.product import ProductShape

# Words and models that betray a grant logged under a type the configuration reads as usage.
_GRANT_WORDS = re.compile(r"grant|purchase|pack|credit|bonus|top_?up|refund|trial|subscription|renewal")
_GRANT_MODELS = ("subscription", "trial", "stripe", "system", "admin")
_NUMBER = "'^-?[0-9]+(\\.[0-9]+)?$'"


def count_action_types(conn: Connection, cols: Columns) -> list[ActionTypeCount]:
    """Every action type with its rows and tokens, how the bot classifies it, and what its rows suggest."""
    t = "t"
    tokens, ok, model = cols.tokens(t), cols.success(t), cols.text_of(t, "model_used")
    before, after = cols.meta(t, "balance_before"), cols.meta(t, "balance_after")
    numbers = f"{before} ~ {_NUMBER} AND {after} ~ {_NUMBER}"
    rows = conn.execute(
        text(
            f"""
            SELECT t.action_type::text AS action, count(*) AS rows,
                   coalesce(sum({tokens}) FILTER (WHERE {ok}), 0) AS tokens,
                   count(*) FILTER (WHERE {model} IN ({", ".join(literal(m) for m in _GRANT_MODELS)})) AS grant_models,
                   count(*) FILTER (WHERE {tokens} >= 50000 AND {tokens} % 1000 = 0) AS round_amounts,
                   count(*) FILTER (WHERE {numbers} AND ({after})::numeric = {tokens}
                                     AND ({before})::numeric <> 0) AS sets,
                   count(*) FILTER (WHERE {numbers} AND ({after})::numeric = ({before})::numeric + {tokens})
                       AS adds
            FROM token_usage t GROUP BY 1 ORDER BY rows DESC LIMIT 200
            """
        )
    ).all()
    return [_classified(cols, row) for row in rows]


def _classified(cols: Columns, row: Row[Any]) -> ActionTypeCount:
    action: str | None = row.action
    count, sets, adds = int(row.rows), int(row.sets), int(row.adds)
    kind = (
        "reset"
        if action in cols.reset_actions
        else "grant"
        if action in cols.grant_actions
        else "deduction"
        if action in cols.deduct_actions
        else "usage"
    )
    hint = None
    if sets > adds and kind != "reset":
        hint = f"{sets:,} rows record balance_after = their tokens: the row sets the balance, a reset"
    elif kind == "usage" and action is not None:
        looks = [
            "its name" if _GRANT_WORDS.search(action.lower()) else None,
            "its model (subscription, trial, stripe, system, admin)"
            if int(row.grant_models) * 2 > count
            else None,
            "large round amounts" if int(row.round_amounts) * 2 > count else None,
        ]
        reasons = [reason for reason in looks if reason]
        if reasons:
            hint = f"looks like a grant ({', '.join(reasons)}) but is read as usage"
    return ActionTypeCount(action=action, rows=count, tokens=int(row.tokens), kind=kind, hint=hint)


def suggested_settings(types: list[ActionTypeCount], settings: Settings) -> list[str]:
    """The action-type settings the evidence points to, as lines to paste, where they differ from today's."""
    resets = {
        t.action for t in types if t.action and (t.kind == "reset" or (t.hint or "").endswith("a reset"))
    }
    grants = {
        t.action
        for t in types
        if t.action and (t.kind == "grant" or (t.hint or "").startswith("looks like a grant"))
    } - resets
    lines = []
    for name, wanted, today in (
        (
            "TOKENS_GRANT_ACTIONS",
            grants | (set(settings.tokens_grant_actions) - resets),
            settings.tokens_grant_actions,
        ),
        ("TOKENS_RESET_ACTIONS", resets, settings.tokens_reset_actions),
    ):
        if wanted != set(today):
            ordered = sorted(wanted)
            plain = all("," not in a and a == a.strip() for a in ordered)
            lines.append(f"{name}={','.join(ordered)}" if plain else f"{name}='{json.dumps(ordered)}'")
    return lines


def explain_product(
    conn: Connection, shape: ProductShape, settings: Settings
) -> tuple[list[SchemaNote], list[str]]:
    """Profile versions, the cost unit, tiers and the balance columns, each with what the bot does; and
    the tier and cost-unit settings the evidence points to."""
    cols = Columns.of(shape, settings)
    notes = [_profiles_note(conn, cols), _tiers_note(conn, shape, settings)]
    suggestions = _tier_table_suggestion(conn, shape)
    if not shape.has_balances:
        notes.append(
            SchemaNote(
                subject="user_profiles",
                found="no vibe_assistant_tokens_remaining column: the product keeps no cached balance",
                meaning="there is nothing to reconcile: check, the scans and approvals refuse and say so."
                " The product computes balances on the fly (a later era of the guide's product)",
            )
        )
    notes += _later_eras(conn)
    if shape.has_balances:
        cost = _cost_unit_note(conn, cols, settings)
        notes.append(cost)
        if cost is not None and cost.meaning.startswith("set "):
            suggestions.append(cost.meaning.split(":")[0].removeprefix("set "))
    return [note for note in notes if note is not None], suggestions


# Tables of the guide's product's later eras, which tokens-bot does not read.
_LATER_ERAS = {
    "public.token_transactions": "grants, packs and deductions logged in a second table are not read:"
    " tokens-bot reconciles token_usage alone, so a grant logged only there looks unlogged",
    "public.households": "households pool members' usage against the admin's grants; tokens-bot"
    " reconciles each user's own profile and ledger",
}


def _later_eras(conn: Connection) -> list[SchemaNote]:
    found = conn.execute(
        text("SELECT t FROM unnest(CAST(:tables AS text[])) t WHERE to_regclass(t) IS NOT NULL"),
        {"tables": list(_LATER_ERAS)},
    ).scalars()
    return [SchemaNote(subject=table, found="present", meaning=_LATER_ERAS[table]) for table in found]


# A foreign key from a tier-like profile column to a table, and that table's integer columns.
_TIER_KEYS_SQL = text(
    """
    SELECT a.attname::text AS column_name, k.confrelid::regclass::text AS target, ta.attname::text AS key,
           (SELECT array_agg(c.attname::text ORDER BY c.attnum) FROM pg_attribute c
             WHERE c.attrelid = k.confrelid AND c.attnum > 0 AND NOT c.attisdropped
               AND format_type(c.atttypid, NULL) IN ('integer', 'bigint', 'numeric')
               AND c.attname ~ 'grant') AS amounts,
           (SELECT c.attname::text FROM pg_attribute c
             WHERE c.attrelid = k.confrelid AND c.attname IN ('tier_type', 'name') AND NOT c.attisdropped
             ORDER BY c.attname = 'tier_type' DESC LIMIT 1) AS name_column
    FROM pg_constraint k
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
    JOIN pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = k.confkey[1]
    WHERE k.conrelid = to_regclass('public.user_profiles') AND k.contype = 'f' AND a.attname ~ 'tier'
    """
)


def _tier_table_suggestion(conn: Connection, shape: ProductShape) -> list[str]:
    """Where the configured tier column is missing but a tier-like column points into a table of tiers."""
    if shape.tier_column is not None:
        return []
    for row in conn.execute(_TIER_KEYS_SQL):
        if row.amounts and row.name_column:
            schema_table = row.target if "." in row.target else f"public.{row.target}"
            table = {"table": schema_table, "key": row.key, "name": row.name_column, "amounts": row.amounts}
            return [f"TOKENS_TIER_COLUMN={row.column_name}", f"TOKENS_TIER_TABLE='{json.dumps(table)}'"]
    return []


def _profiles_note(conn: Connection, cols: Columns) -> SchemaNote:
    shared = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM user_profiles GROUP BY user_id HAVING count(*) > 1) d")
    ).scalar_one()
    if cols.shape.one_profile_per_user:
        how = "user_id is unique: one row per user"
    else:
        has = cols.profiles.has
        rule = (
            "the active, non-draft row"
            if has("is_active") and has("is_draft")
            else "the most recently updated row"
            if has("updated_at")
            else "one row per user, by its key"
        )
        how = f"user_id is not unique; {shared:,} users have several rows; the bot reads and writes {rule}"
    return SchemaNote(subject="user_profiles", found="profile versions", meaning=how)


def _tiers_note(conn: Connection, shape: ProductShape, settings: Settings) -> SchemaNote | None:
    table = settings.tokens_tier_table
    if shape.tier_column is None:
        return SchemaNote(
            subject=f"user_profiles.{settings.tokens_tier_column}",
            found="missing",
            meaning="no tier: the initial grant is the first grant in the ledger (TOKENS_TIER_COLUMN names another)",
        )
    with_tier = conn.execute(
        text(f'SELECT count(*) FILTER (WHERE p."{shape.tier_column}" IS NOT NULL) FROM user_profiles p')
    ).scalar_one()
    if table is not None and shape.tier_table is None:
        return SchemaNote(
            subject=f"TOKENS_TIER_TABLE {table.table}",
            found="missing, or lacking one of its columns",
            meaning="tiers are looked up by name in TOKENS_TIER_GRANTS instead",
        )
    found = shape.tier_table
    source = (
        f"keys into {found.table} (amounts from {', '.join(found.amounts)})"
        if found is not None
        else "tier names in TOKENS_TIER_GRANTS"
    )
    return SchemaNote(
        subject=f"user_profiles.{shape.tier_column}",
        found=f"set on {with_tier:,} profiles",
        meaning=f"read as {source}; a known tier's amount is the initial grant",
    )


def _cost_unit_note(conn: Connection, cols: Columns, settings: Settings) -> SchemaNote | None:
    """The median, over users with both, of the profile's cost per ledger cost unit: 0.01 means dollars."""
    if not cols.ledger.has("cost_estimate") or not cols.profiles.has(COST):
        return None
    t = "t"
    ratio = conn.execute(
        text(
            f"""
            WITH l AS (
                SELECT t.user_id::text AS user_id,
                       sum({cols.cents(t)}) FILTER (WHERE {cols.success(t)} AND {cols.is_usage(t)}) AS cents
                FROM token_usage t GROUP BY 1
            )
            SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY {cols.balance("p", COST)} / l.cents),
                   count(*)
            FROM {cols.current_profiles("p")} JOIN l ON l.user_id = p.user_id::text
            WHERE l.cents > 0 AND {cols.balance("p", COST)} > 0
            """
        )
    ).one()
    median, users = ratio
    if not users:
        return SchemaNote(
            subject="TOKENS_COST_UNIT", found="no user with both costs", meaning="no evidence either way"
        )
    evidence = "cents" if median is not None and median > Decimal("0.1") else "dollars"
    verdict = (
        f"matches TOKENS_COST_UNIT={settings.tokens_cost_unit}"
        if evidence == settings.tokens_cost_unit
        else f"set TOKENS_COST_UNIT={evidence}: every cost would otherwise differ by about 100×"
    )
    return SchemaNote(
        subject="TOKENS_COST_UNIT",
        found=f"the profile's cost is {Decimal(median).quantize(Decimal('0.0001'))} × the ledger's cost"
        f" (median over {users:,} users)",
        meaning=verdict,
    )
