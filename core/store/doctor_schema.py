"""`tokens-bot doctor`, the product half: the shape the bot detected, each deviation from the guide's schema
and what the bot does about it, and how many rows across the fleet needed interpreting."""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.domain.reports import QualityCount, SchemaNote
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
from core.store.ledger_writes import ledger_write_problems
from core.store.product import LEDGER_OPTIONAL, PROFILE_BALANCES, Column, ProductShape, Table

# The guide's types; anything else is reported with the reading the bot applies to it.
_GUIDE_TYPES = {
    "token_usage.id": "uuid",
    "token_usage.user_id": "uuid",
    "token_usage.action_type": "text",
    "token_usage.model_used": "text",
    "token_usage.tokens_used": "integer",  # any integer type is as good
    "token_usage.cost_estimate": "numeric",
    "token_usage.success": "boolean",
    "token_usage.metadata": "jsonb",
    "token_usage.created_at": "timestamp with time zone",
    "user_profiles.user_id": "uuid",
    "user_profiles.vibe_assistant_tokens_remaining": "integer",
    "user_profiles.vibe_assistant_tokens_used": "integer",
    "user_profiles.vibe_assistant_total_cost": "numeric",
}

_NULL_MEANINGS = {
    "token_usage.tokens_used": "a NULL counts as 0 tokens",
    "token_usage.cost_estimate": "a NULL counts as 0 cents",
    "token_usage.success": "a NULL counts as a success (charged)",
    "token_usage.created_at": "a NULL counts as older than every dated row, and never as recent",
    "token_usage.action_type": "a NULL counts as usage",
    "token_usage.metadata": "a NULL, or anything but a JSON object, counts as no metadata",
    "user_profiles.vibe_assistant_tokens_remaining": "a NULL reads as 0 and is shown as not set",
    "user_profiles.vibe_assistant_tokens_used": "a NULL reads as 0 and is shown as not set",
    "user_profiles.vibe_assistant_total_cost": "a NULL reads as 0 and is shown as not set",
}

_MISSING_MEANINGS = {
    "model_used": "breakdowns show no model; cost drift cannot be priced",
    "input_tokens": "cost drift cannot be priced",
    "output_tokens": "cost drift cannot be priced",
    "cost_estimate": "every cost counts as 0, so cost discrepancies mean the profile's whole cost",
    "success": "every row counts as a success",
    "error_message": "operations show no error text",
    "metadata": "duplicates are found by timing only; the bot's own rows are recognised by nothing",
}


def _type_meaning(subject: str, column: Column) -> str:
    """What the bot does with a type other than the guide's."""
    name = subject.split(".")[1]
    if name in ("id", "user_id"):
        return "compared as text where the two tables differ; integer ids order numerically"
    if column.enum:
        return "read as text"
    if column.is_float:
        return "converted per row to exact numeric (tokens rounded to whole tokens), never summed as float"
    if name == "created_at":
        return "a timestamp without time zone is read as UTC"
    if name == "metadata":
        return "json is read as it is; text is parsed per row, and invalid JSON counts as none"
    if column.is_integer or column.is_numeric:
        return "summed exactly as numeric; fractions of a token are rounded per row"
    return "read as text"


def _table_notes(table: Table) -> list[SchemaNote]:
    if table.kind == "missing":
        return [SchemaNote(subject=table.name, found="missing", meaning="tokens-bot cannot work without it")]
    notes = []
    if table.kind != "table":
        notes.append(
            SchemaNote(
                subject=table.name,
                found=f"a {table.kind}",
                meaning="read like a table; approvals write through it, so it must accept UPDATE/INSERT",
            )
        )
    if table.row_security:
        notes.append(
            SchemaNote(
                subject=table.name,
                found="row-level security applies to the bot's role",
                meaning="rows it hides are not counted, and no check is ever called reconciled;"
                " give the role BYPASSRLS or a policy that shows every row",
            )
        )
    for subject in (s for s in _GUIDE_TYPES if s.startswith(f"{table.name}.")):
        name = subject.split(".")[1]
        if not table.has(name):
            if name in LEDGER_OPTIONAL or name in PROFILE_BALANCES:
                meaning = _MISSING_MEANINGS.get(name, "read as 0 and shown as not set")
                notes.append(SchemaNote(subject=subject, found="missing", meaning=meaning))
            continue
        column = table.column(name)
        guide = _GUIDE_TYPES[subject]
        if column.base != guide and not (guide == "integer" and column.is_integer):
            notes.append(
                SchemaNote(subject=subject, found=column.type, meaning=_type_meaning(subject, column))
            )
        if column.nullable and subject in _NULL_MEANINGS:
            notes.append(SchemaNote(subject=subject, found="nullable", meaning=_NULL_MEANINGS[subject]))
    return notes


def explain_schema(shape: ProductShape, settings: Settings) -> list[SchemaNote]:
    """Every deviation from the guide's schema, with the reading or action the bot applies to it."""
    notes = [
        SchemaNote(subject=gap, found="missing", meaning="required: tokens-bot cannot reconcile")
        for gap in shape.missing
    ]
    notes += _table_notes(shape.ledger) + _table_notes(shape.profiles)
    if shape.ledger.kind != "missing" and not shape.missing:
        actions = [settings.tokens_grant_actions[0], settings.tokens_deduct_actions[0]]
        cols = Columns.of(shape, settings)
        for problem in ledger_write_problems(cols, actions):
            notes.append(
                SchemaNote(
                    subject="approvals",
                    found=problem,
                    meaning="approved grants and deductions are refused before anything is written",
                )
            )
    if shape.email_source is None:
        notes.append(
            SchemaNote(
                subject=settings.tokens_email_source,
                found="missing",
                meaning="users can be named by id only (TOKENS_EMAIL_SOURCE)",
            )
        )
    return notes


def count_odd_rows(conn: Connection, shape: ProductShape, settings: Settings) -> list[QualityCount]:
    """Across the whole fleet, the rows each reading applies to: one pass over each table."""
    if shape.missing:
        return []
    cols, t, p = Columns.of(shape, settings), "t", "p"
    ledger = {
        "ledger rows with tokens_used NULL": "t.tokens_used IS NULL",
        "successful usage rows with cost_estimate NULL (grant rows without one are normal)": (
            f"t.cost_estimate IS NULL AND {cols.success(t)} AND {cols.is_usage(t)}"
            if shape.ledger.has("cost_estimate")
            else "false"
        ),
        "ledger rows with success NULL": "t.success IS NULL" if shape.ledger.has("success") else "false",
        "ledger rows with created_at NULL": "t.created_at IS NULL",
        "ledger rows dated in the future": cols.is_future(t),
        "ledger rows with no action_type": "coalesce(btrim(t.action_type::text), '') = ''",
        "ledger rows whose action_type differs from a configured one by case or spaces": cols.near_miss(t),
        "ledger rows with negative tokens_used": f"coalesce({cols.tokens(t)}, 0) < 0 AND NOT {cols.is_reversal(t)}",
        "ledger rows whose metadata is not a JSON object": cols.metadata_is_odd(t),
        "ledger rows with no user_id": "t.user_id IS NULL",
        "ledger rows of users with no profile": (
            f"NOT EXISTS (SELECT 1 FROM user_profiles p WHERE {cols.same_user('p.user_id', cols.profiles, 't.user_id', cols.ledger)})"
        ),
    }
    profiles = {
        "profiles with remaining NULL": cols.unset(p, REMAINING),
        "profiles with used NULL": cols.unset(p, USED),
        "profiles with cost NULL": cols.unset(p, COST),
    }
    counts = []
    for table, alias, conditions in (("token_usage", t, ledger), ("user_profiles", p, profiles)):
        select = ", ".join(f"count(*) FILTER (WHERE {where})" for where in conditions.values())
        row = conn.execute(text(f"SELECT {select} FROM {table} {alias}")).one()
        counts += [QualityCount(what=what, rows=int(n)) for what, n in zip(conditions, row, strict=True)]
    shared = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM user_profiles GROUP BY user_id HAVING count(*) > 1) d")
    ).scalar_one()
    counts.append(QualityCount(what="users with more than one profile row", rows=int(shared)))
    if shape.email_source is not None:
        src = shape.email_source
        clashes = conn.execute(
            text(
                f'SELECT count(*) FROM (SELECT 1 FROM {shape.email_table} GROUP BY lower("{src.column}"::text)'
                f' HAVING count(DISTINCT "{src.id_column}") > 1) d'
            )
        ).scalar_one()
        counts.append(
            QualityCount(what="emails shared by several users (letter case aside)", rows=int(clashes))
        )
    return counts
