"""Demo data: the product's tables and a deterministic data set in which every finding occurs.

The data set is a small, believable product: about two hundred users whose profiles agree exactly with
their ledgers (a few of them nearly out of tokens), one heavy user with thousands of operations, and one
showcase user per finding with a memorable email at demo.example, so a demo or a test can run
`/tokens check failed-charged@demo.example` and see that finding with its exact tokens.

Everything derives from a fixed seed, a fixed reference date and uuid5 ids: every load produces the same
rows, so screenshots, docs and tests agree, and a forced reload replaces exactly the earlier demo rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, Engine, text

from core.domain.errors import ProductDataExistsError
from core.store.db import unit_of_work
from demo.population import build
from demo.rows import User


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded: counts for the log line, and the showcase users a demo walks through."""

    users: int
    ledger_rows: int
    # label (a FindingKind value, "reconciled" or "heavy") -> (user_id, email)
    showcase: Mapping[str, tuple[uuid.UUID, str]]


def create_product_tables(conn: Connection) -> None:
    """Create `token_usage`, `user_profiles` and `auth.users` where absent, as the guide describes them."""
    conn.exec_driver_sql(files("demo").joinpath("product_schema.sql").read_text())


def has_product_data(conn: Connection) -> bool:
    """True when the product tables exist and hold any row; demo data must never mix into real data."""
    exists = conn.execute(text("SELECT to_regclass('public.user_profiles') IS NOT NULL")).scalar_one()
    if not exists:
        return False
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM public.user_profiles)")).scalar_one())


def load_demo_data(conn: Connection, *, force: bool = False) -> DemoSummary:
    """Fill the product tables with the demo data set, in the caller's transaction.

    Refused when the tables already hold rows, since demo balances mixed into real ones would be
    indistinguishable; `force` loads anyway, first removing earlier demo rows (their ids are fixed) so
    a reload is idempotent and never touches anyone else's rows.
    """
    create_product_tables(conn)
    if has_product_data(conn) and not force:
        profiles = conn.execute(text("SELECT count(*) FROM public.user_profiles")).scalar_one()
        raise ProductDataExistsError(
            f"The product tables already hold {profiles:,} user profiles, so no demo data was loaded:"
            " demo balances must never mix into real ones. Load demo data into an empty database,"
            " or pass --force only on a database that is itself a demo."
        )
    users, showcase = build()
    ids = [u.id for u in users]
    conn.execute(text("DELETE FROM public.token_usage WHERE user_id = ANY(:ids)"), {"ids": ids})
    conn.execute(text("DELETE FROM public.user_profiles WHERE user_id = ANY(:ids)"), {"ids": ids})
    conn.execute(text("DELETE FROM auth.users WHERE id = ANY(:ids)"), {"ids": ids})
    rows = _insert(conn, users)
    return DemoSummary(
        users=len(users),
        ledger_rows=rows,
        showcase=MappingProxyType({label: (u.id, u.email) for label, u in showcase.items()}),
    )


# ---------------------------------------------------------------------------------------------------
# Writing it: one set-based INSERT per table, from parallel arrays


_INSERT_AUTH = text(
    """
    INSERT INTO auth.users (id, email, created_at)
    SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:email AS text[]), CAST(:created_at AS timestamptz[]))
    """
)

_INSERT_PROFILES = text(
    """
    INSERT INTO public.user_profiles (user_id, membership_tier, vibe_assistant_tokens_remaining,
        vibe_assistant_tokens_used, vibe_assistant_total_cost, created_at, updated_at)
    SELECT * FROM unnest(CAST(:user_id AS uuid[]), CAST(:tier AS text[]), CAST(:remaining AS bigint[]),
        CAST(:used AS bigint[]), CAST(:cost AS numeric[]), CAST(:created_at AS timestamptz[]),
        CAST(:updated_at AS timestamptz[]))
    """
)

_INSERT_USAGE = text(
    """
    INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,
        output_tokens, cost_estimate, success, error_message, metadata, created_at)
    SELECT id, user_id, action_type, model_used, tokens_used, input_tokens, output_tokens, cost_estimate,
           success, error_message, CAST(metadata AS jsonb), created_at
    FROM unnest(CAST(:id AS uuid[]), CAST(:user_id AS uuid[]), CAST(:action_type AS text[]),
        CAST(:model_used AS text[]), CAST(:tokens_used AS bigint[]), CAST(:input_tokens AS bigint[]),
        CAST(:output_tokens AS bigint[]), CAST(:cost_estimate AS numeric[]), CAST(:success AS boolean[]),
        CAST(:error_message AS text[]), CAST(:metadata AS text[]), CAST(:created_at AS timestamptz[]))
        AS u(id, user_id, action_type, model_used, tokens_used, input_tokens, output_tokens, cost_estimate,
             success, error_message, metadata, created_at)
    """
)


def _columns(records: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as parallel arrays: one bind parameter per column, so each table is one statement."""
    columns: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.items():
            columns.setdefault(key, []).append(value)
    return columns


def _insert(conn: Connection, users: list[User]) -> int:
    """Insert users, profiles and ledger rows; returns the number of ledger rows."""
    conn.execute(
        _INSERT_AUTH,
        _columns({"id": u.id, "email": u.email, "created_at": u.signup} for u in users),
    )
    profiles = []
    for u in users:
        remaining, used, cost = u.profile()
        last = max((r.created_at for r in u.rows), default=u.signup)
        profiles.append(
            {
                "user_id": u.id,
                "tier": u.tier,
                "remaining": remaining,
                "used": used,
                "cost": cost,
                "created_at": u.signup,
                "updated_at": last,
            }
        )
    conn.execute(_INSERT_PROFILES, _columns(profiles))
    usage = [
        {
            "id": r.id,
            "user_id": u.id,
            "action_type": r.action_type,
            "model_used": r.model_used,
            "tokens_used": r.tokens_used,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cost_estimate": r.cost_estimate,
            "success": r.success,
            "error_message": r.error_message,
            "metadata": json.dumps(r.metadata, sort_keys=True),
            "created_at": r.created_at,
        }
        for u in users
        for r in u.rows
    ]
    conn.execute(_INSERT_USAGE, _columns(usage))
    return len(usage)


def fill_demo_database(engine: Engine, *, force: bool = False) -> DemoSummary:
    """Load the demo data set in a transaction of its own, committed once it is whole."""
    with unit_of_work(engine) as conn:
        summary = load_demo_data(conn, force=force)
        conn.commit()
        return summary


def fill_empty_database(engine: Engine) -> DemoSummary | None:
    """The embedded database's first start: demo data when the product tables hold no row, else nothing."""
    with unit_of_work(engine) as conn:
        if has_product_data(conn):
            return None
        summary = load_demo_data(conn)
        conn.commit()
        return summary
