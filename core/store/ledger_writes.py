"""Writing tokens-bot's own rows into the product's ledger and balances, within the product's constraints.

The product owns `token_usage` and `user_profiles`: a column may be NOT NULL without a default, the
action type may be an enum or limited by a CHECK, the id may have no default. Each write is built
from the shape read at start, and anything the bot cannot satisfy is refused before a row is written.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from core.domain.errors import InvalidAdjustmentError, ProductDataError
from core.store.columns import Columns
from core.store.product import Column

# Columns the bot fills itself; any other NOT NULL column without a default makes a write impossible.
_FILLED = {
    "id",
    "user_id",
    "action_type",
    "model_used",
    "tokens_used",
    "cost_estimate",
    "success",
    "metadata",
    "created_at",
    "input_tokens",
    "output_tokens",
    "error_message",
}


def _cast(name: str, column: Column) -> str:
    return f"CAST(:{name} AS {column.type})"


def _time(column: Column) -> str:
    """A UTC instant as the column stores it: naive UTC for `timestamp without time zone`."""
    if column.base == "timestamp with time zone":
        return "CAST(:at AS timestamptz)"
    return f"CAST(CAST(:at AS timestamptz) AT TIME ZONE 'UTC' AS {column.type})"


def ledger_write_problems(cols: Columns, actions: list[str]) -> list[str]:
    """Why the bot could not insert its rows into this ledger, in words an operator can act on."""
    ledger = cols.ledger
    problems = []
    for column in ledger.columns:
        if column.name not in _FILLED and not column.nullable and not column.has_default:
            problems.append(
                f"token_usage.{column.name} is NOT NULL without a default, and tokens-bot does not know"
                " what to write there"
            )
    if ledger.has("id"):
        column = ledger.column("id")
        if not column.has_default and column.base not in ("uuid", "text", "character varying"):
            problems.append(
                f"token_usage.id ({column.type}) has no default, so tokens-bot cannot number its rows"
            )
    if ledger.has("action_type"):
        allowed = ledger.column("action_type").check_values
        for action in actions:
            if allowed is not None and action not in allowed:
                problems.append(
                    f"token_usage.action_type has a CHECK constraint that does not allow {action!r}"
                    f" (it allows {', '.join(allowed)})"
                )
    return problems


def insert_ledger_row(
    conn: Connection,
    cols: Columns,
    *,
    model: str,
    user_id: str,
    action: str,
    tokens: int,
    metadata: dict[str, Any],
    now: datetime,
) -> str:
    """Insert one successful row of `tokens` under `action`; returns its id as text."""
    problems = ledger_write_problems(cols, [action])
    if problems:
        raise ProductDataError(
            "tokens-bot cannot write to this product's ledger, so nothing was changed: "
            + "; ".join(problems)
            + ". `tokens-bot doctor` lists what the bot needs."
        )
    ledger = cols.ledger
    largest: int | None = ledger.column("tokens_used").largest
    if largest is not None and tokens > largest:
        raise InvalidAdjustmentError(
            f"{tokens:,} tokens do not fit token_usage.tokens_used ({ledger.column('tokens_used').type});"
            " nothing was changed."
        )
    values: dict[str, str] = {
        "user_id": _cast("u", ledger.column("user_id")),
        "action_type": _cast("a", ledger.column("action_type")),
        "tokens_used": _cast("t", ledger.column("tokens_used")),
        "created_at": _time(ledger.column("created_at")),
    }
    params: dict[str, Any] = {
        "u": user_id,
        "a": action,
        "t": tokens,
        "at": now,
        "md": json.dumps(metadata),
        "m": model,
        "zero": 0,
        "yes": "true",
        "empty": "",
    }
    optional = {"model_used": "m", "cost_estimate": "zero", "success": "yes", "metadata": "md"}
    for name, param in optional.items():
        if ledger.has(name):
            values[name] = _cast(param, ledger.column(name))
    for name, param in (("input_tokens", "zero"), ("output_tokens", "zero"), ("error_message", "empty")):
        if ledger.has(name) and not ledger.column(name).nullable and not ledger.column(name).has_default:
            values[name] = _cast(param, ledger.column(name))
    if not ledger.column("id").has_default:
        values["id"] = _cast("id", ledger.column("id"))
        params["id"] = str(uuid.uuid4())
    names = ", ".join(values)
    sql = f"INSERT INTO token_usage ({names}) VALUES ({', '.join(values.values())}) RETURNING id::text"
    return str(conn.execute(text(sql), params).scalar_one())


def require_fits(cols: Columns, name: str, value: int | Decimal, what: str) -> None:
    """Refuse, before writing, a balance value its profile column cannot hold."""
    if not cols.profiles.has(name):
        return
    column = cols.profiles.column(name)
    largest = column.largest
    if largest is not None and abs(Decimal(value)) > largest:
        raise InvalidAdjustmentError(
            f"{what} would be {value:,}, which user_profiles.{name} ({column.type}) cannot hold;"
            " nothing was changed."
        )
