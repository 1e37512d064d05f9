"""Product databases the bot does not own, in many shapes: plain DDL of our own and one logical dataset.

Each `Variant` names a type for every column the README says may vary. `variant_database` creates a
scratch database with that DDL (never core/sql/product_schema.sql), migrates the bot's own schema into
it and loads the dataset of `tests.support.variant_data`, cast to the variant's types.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from core.store.db import make_engine
from core.store.migrate import migrate
from tests.support.databases import create_database, drop_database

TIERS_ENUM = ("annual", "monthly", "lifetime", "free")


@dataclass(frozen=True)
class Variant:
    name: str
    id_type: str = "uuid"
    """`uuid` (default gen_random_uuid()), `uuid-nodefault`, `identity` (bigint GENERATED ALWAYS), `text`."""
    profile_user: str = "uuid"
    ledger_user: str = "uuid"
    auth_id: str = "uuid"
    tokens_type: str = "integer"
    cost_type: str = "numeric(12,4)"
    total_cost_type: str = "numeric(12,2)"
    balance_type: str = "bigint"
    created_type: str = "timestamptz"
    """`timestamptz`, `timestamp` or `date`."""
    metadata_type: str = "jsonb"
    tier_type: str = "text"
    """`text`, `varchar(20)` or `enum`."""
    profiles_view: bool = False

    @property
    def cost_scale(self) -> int:
        """The scale the ledger's dollars are rounded to: the profile cost column's, 6 when it has none."""
        if self.total_cost_type.startswith("numeric("):
            return int(self.total_cost_type.rstrip(")").split(",")[1])
        return 6

    @property
    def text_user_ids(self) -> bool:
        """Both tables hold user ids as text: a user whose id is no UUID at all can exist."""
        return self.profile_user == "text" and self.ledger_user == "text"


VARIANTS = [
    Variant("supabase"),
    Variant(
        "identity_text_users_view",
        id_type="identity",
        profile_user="text",
        ledger_user="text",
        auth_id="text",
        tokens_type="bigint",
        cost_type="integer",
        total_cost_type="numeric(10,4)",
        balance_type="integer",
        created_type="timestamp",
        metadata_type="json",
        tier_type="varchar(20)",
        profiles_view=True,
    ),
    Variant(
        "text_ids_numeric_tokens",
        id_type="text",
        profile_user="text",
        ledger_user="text",
        auth_id="text",
        tokens_type="numeric",
        cost_type="numeric",
        total_cost_type="real",
        balance_type="numeric",
        metadata_type="text",
        tier_type="enum",
    ),
    Variant(
        "mixed_users_floats_view",
        id_type="uuid-nodefault",
        ledger_user="text",
        cost_type="real",
        total_cost_type="double precision",
        created_type="timestamp",
        tier_type="enum",
        profiles_view=True,
    ),
    Variant(
        "identity_double_text_metadata",
        id_type="identity",
        auth_id="text",
        tokens_type="bigint",
        cost_type="double precision",
        created_type="date",
        metadata_type="text",
        balance_type="integer",
    ),
    Variant(
        "text_profiles_uuid_ledger",
        id_type="text",
        profile_user="text",
        tokens_type="numeric",
        total_cost_type="numeric(10,4)",
        created_type="timestamp",
        metadata_type="json",
        tier_type="varchar(20)",
        profiles_view=True,
    ),
]

_ID_COLUMN = {
    "uuid": "id uuid PRIMARY KEY DEFAULT gen_random_uuid()",
    "uuid-nodefault": "id uuid PRIMARY KEY",
    "identity": "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "text": "id text PRIMARY KEY",
}


def ddl(v: Variant) -> list[str]:
    """The product's tables as another team might have made them: every non-key column nullable, no defaults."""
    tier = "public.membership" if v.tier_type == "enum" else v.tier_type
    created = {"timestamptz": "timestamp with time zone"}.get(v.created_type, v.created_type)
    profiles = "user_profiles_base" if v.profiles_view else "user_profiles"
    statements = [
        "CREATE SCHEMA auth",
        f"CREATE TABLE auth.users (id {v.auth_id} PRIMARY KEY, email text, last_sign_in_at timestamptz)",
        f"""CREATE TABLE public.{profiles} (
            user_id {v.profile_user} PRIMARY KEY,
            display_name text,
            membership_tier {tier},
            vibe_assistant_tokens_remaining {v.balance_type},
            vibe_assistant_tokens_used {v.balance_type},
            vibe_assistant_total_cost {v.total_cost_type},
            onboarding jsonb,
            updated_at timestamptz)""",
        f"""CREATE TABLE public.token_usage (
            {_ID_COLUMN[v.id_type]},
            user_id {v.ledger_user},
            action_type text,
            model_used text,
            tokens_used {v.tokens_type},
            input_tokens {v.tokens_type},
            output_tokens {v.tokens_type},
            cost_estimate {v.cost_type},
            success boolean,
            error_message text,
            metadata {v.metadata_type},
            created_at {created},
            client_version text,
            session_id uuid)""",
        "CREATE INDEX token_usage_user_created_idx ON public.token_usage (user_id, created_at DESC)",
        f"CREATE INDEX profiles_remaining_idx ON public.{profiles} (vibe_assistant_tokens_remaining)",
        f"CREATE INDEX profiles_used_idx ON public.{profiles} (vibe_assistant_tokens_used DESC NULLS LAST)",
        # Our own reading of text metadata, for the independent computation (not the bot's function).
        "CREATE SCHEMA expect",
        "CREATE FUNCTION expect.try_jsonb(doc text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS"
        " $$ BEGIN RETURN doc::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$",
    ]
    if v.tier_type == "enum":
        labels = ", ".join(f"'{t}'" for t in TIERS_ENUM)
        statements.insert(1, f"CREATE TYPE public.membership AS ENUM ({labels})")
    if v.profiles_view:
        # A simple view: PostgreSQL makes it auto-updatable, as Supabase users often expose profiles.
        statements.append(
            "CREATE VIEW public.user_profiles AS SELECT user_id, membership_tier,"
            " vibe_assistant_tokens_remaining, vibe_assistant_tokens_used, vibe_assistant_total_cost,"
            " display_name FROM public.user_profiles_base"
        )
    return statements


def _cast(value_sql: str, sql_type: str) -> str:
    return f"CAST({value_sql} AS {sql_type})"


def insert_user(conn: Connection, v: Variant, user: dict[str, Any]) -> None:
    """A profile (unless `profile` is False) and an auth.users row (unless `email` is None)."""
    if user.get("profile", True):
        tier = "public.membership" if v.tier_type == "enum" else v.tier_type
        conn.execute(
            text(
                "INSERT INTO user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,"
                " vibe_assistant_tokens_used, vibe_assistant_total_cost, display_name) VALUES ("
                f"{_cast(':u', v.profile_user)}, {_cast(':tier', tier)},"
                f" {_cast('CAST(:r AS numeric)', v.balance_type)}, {_cast('CAST(:used AS numeric)', v.balance_type)},"
                f" {_cast('CAST(:c AS numeric)', v.total_cost_type)}, :name)"
            ),
            {
                "u": user["id"],
                "tier": user.get("tier"),
                "r": user.get("remaining"),
                "used": user.get("used"),
                "c": user.get("cost"),
                "name": user["key"],
            },
        )
    if user.get("email") is not None:
        conn.execute(
            text(f"INSERT INTO auth.users (id, email) VALUES ({_cast(':u', v.auth_id)}, :e)"),
            {"u": user["id"], "e": user["email"]},
        )


def insert_rows(conn: Connection, v: Variant, rows: list[dict[str, Any]]) -> None:
    """Ledger rows given as text and numbers, cast by PostgreSQL into the variant's column types."""
    created = v.created_type
    tokens = lambda name: _cast(f"CAST(:{name} AS numeric)", v.tokens_type)  # noqa: E731
    columns = {
        "user_id": _cast(":user_id", v.ledger_user),
        "action_type": ":action_type",
        "model_used": ":model_used",
        "tokens_used": tokens("tokens_used"),
        "input_tokens": tokens("input_tokens"),
        "output_tokens": tokens("output_tokens"),
        "cost_estimate": _cast("CAST(:cost_estimate AS numeric)", v.cost_type),
        "success": ":success",
        "error_message": ":error_message",
        "metadata": _cast(":metadata", v.metadata_type),
        "created_at": _cast(":created_at", created),
        "client_version": ":client_version",
    }
    if v.id_type != "identity":
        columns["id"] = _cast(":id", "uuid" if v.id_type.startswith("uuid") else "text")
    sql = text(f"INSERT INTO token_usage ({', '.join(columns)}) VALUES ({', '.join(columns.values())})")
    params = []
    for number, row in enumerate(rows):
        metadata = row.get("metadata")
        if metadata == "{invalid" and v.metadata_type != "text":
            metadata = "null"  # only a text column can hold text that is not JSON; a JSON null instead
        params.append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"row-{number}"))
                if v.id_type.startswith("uuid")
                else f"row-{number:05d}",
                "user_id": row["user_id"],
                "action_type": row.get("action_type", "chat_conversation"),
                "model_used": row.get("model_used", "gpt-4o"),
                "tokens_used": row.get("tokens_used"),
                "input_tokens": row.get("input_tokens"),
                "output_tokens": row.get("output_tokens"),
                "cost_estimate": row.get("cost_estimate"),
                "success": row.get("success", True),
                "error_message": row.get("error_message"),
                "metadata": metadata,
                "created_at": row.get("created_at"),
                "client_version": "web-2.3.1",
            }
        )
    if params:
        conn.execute(sql, params)


@contextmanager
def variant_database(server_url: str, v: Variant, load: Any) -> Iterator[str]:
    """A scratch database with the variant's DDL, the bot's migrations, and whatever `load(conn, v)` puts in."""
    name = f"tokens_variant_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            for statement in ddl(v):
                conn.execute(text(statement))
            load(conn, v)
            conn.execute(text("ANALYZE"))
        migrate(engine, "tokens_bot")
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        drop_database(server_url, name)
