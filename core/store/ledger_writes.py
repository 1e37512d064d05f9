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

from sqlalchemy import Connection, Row, text

from core.domain.errors import InvalidAdjustmentError, NotConfiguredError, ProductDataError
from core.domain.models import Balance
from core.settings import Settings
from core.store.columns import COST, REMAINING, USED, Columns
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
    action: str | None,
    tokens: int,
    metadata: dict[str, Any],
    now: datetime,
    cost: Decimal | None = None,
) -> str:
    """Insert one successful row of `tokens` (a reversal's are negative) under `action`, with `cost` in the
    ledger's own unit (0 when None); returns its id as text."""
    problems = ledger_write_problems(cols, [action] if action is not None else [])
    if problems:
        raise ProductDataError(
            "tokens-bot cannot write to this product's ledger, so nothing was changed: "
            + "; ".join(problems)
            + ". `tokens-bot doctor` lists what the bot needs."
        )
    ledger = cols.ledger
    largest: int | None = ledger.column("tokens_used").largest
    if largest is not None and abs(tokens) > largest:
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
        "c": cost if cost is not None else 0,
        "yes": "true",
        "empty": "",
    }
    optional = {"model_used": "m", "cost_estimate": "c", "success": "yes", "metadata": "md"}
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


def current_row(conn: Connection, cols: Columns, user_id: str, *, lock: bool) -> tuple[str, int]:
    """The user's current profile row (core.store.profile_columns) and its remaining balance as the bot reads it
    (NULL is 0); `lock` holds exactly that row until commit, and re-reads the balance under the lock."""
    found = conn.execute(
        text(
            f"SELECT p.bot_profile_key AS key, {cols.balance('p', REMAINING)} AS remaining"
            f" FROM {cols.current_profiles('p')} WHERE p.user_id = {cols.user_param(cols.profiles)}"
        ),
        {"u": user_id},
    ).one()
    if not lock:
        return str(found.key), int(found.remaining)
    locked = lock_profile_row(conn, cols, str(found.key), f"{cols.balance('p', REMAINING)} AS remaining")
    return str(found.key), int(locked.remaining)


def lock_profile_row(conn: Connection, cols: Columns, key: str, columns: str) -> Row[Any]:
    """The one profile row `key` names, locked until commit, with `columns` (of alias `p`) read under the
    lock; a keyless view holding several rows for the key is refused, as nothing could change just one."""
    locked = conn.execute(
        text(f"SELECT {columns} FROM user_profiles p WHERE {cols.is_profile_row('p')} FOR UPDATE"), {"k": key}
    ).all()
    if len(locked) != 1:
        raise ProductDataError(
            f"user_profiles is a view without a key and holds {len(locked):,} rows for this user, so"
            " tokens-bot cannot change exactly one of them. Nothing was changed."
        )
    return locked[0]


def require_ledger_writable(cols: Columns, settings: Settings, delta: int) -> None:
    """Refused when asked, not at the first click: the product's ledger would not take the bot's row."""
    action = (settings.tokens_grant_actions if delta > 0 else settings.tokens_deduct_actions)[:1]
    if not action:
        raise NotConfiguredError(
            f"No action type is configured for a {'grant' if delta > 0 else 'deduction'}"
            f" ({'TOKENS_GRANT_ACTIONS' if delta > 0 else 'TOKENS_DEDUCT_ACTIONS'} is empty). Nothing was requested."
        )
    problems = ledger_write_problems(cols, action)
    if problems:
        raise ProductDataError(
            "tokens-bot could not record this change in the product's ledger, so it was not requested: "
            + "; ".join(problems)
            + ". `tokens-bot doctor` lists what the bot needs."
        )


def _profile_cast(cols: Columns, name: str, param: str) -> str:
    return f"CAST(:{param} AS {cols.profiles.column(name).type})"


def set_remaining(conn: Connection, cols: Columns, key: str, remaining: int) -> None:
    """The one profile row `key` names gets its new remaining balance."""
    conn.execute(
        text(
            f"UPDATE user_profiles p SET {REMAINING} = {_profile_cast(cols, REMAINING, 'r')} WHERE {cols.is_profile_row('p')}"
        ),
        {"r": remaining, "k": key},
    )


def set_balances(
    conn: Connection, cols: Columns, key: str, *, remaining: int, used: int, cost: Decimal
) -> None:
    """A correction: the three cached values of the one profile row `key` names, where the product has them."""
    targets = {REMAINING: "r", USED: "used", COST: "c"}
    assignments = ", ".join(
        f"{name} = {_profile_cast(cols, name, param)}"
        for name, param in targets.items()
        if cols.profiles.has(name)
    )
    conn.execute(
        text(f"UPDATE user_profiles p SET {assignments} WHERE {cols.is_profile_row('p')}"),
        {"r": remaining, "used": used, "c": cost, "k": key},
    )


def profile_image(conn: Connection, cols: Columns, key: str) -> Any:
    """The whole profile row as JSON, for the audit trail's before-image."""
    return conn.execute(
        text(f"SELECT to_jsonb(p) FROM user_profiles p WHERE {cols.is_profile_row('p')}"), {"k": key}
    ).scalar_one()


def require_fits_remaining(cols: Columns, remaining: int) -> None:
    require_fits(cols, REMAINING, remaining, "The balance")


def require_balances_fit(cols: Columns, b: Balance) -> None:
    """A correction writes only values the profile's columns can hold."""
    require_fits(cols, REMAINING, b.expected_remaining, "The remaining balance")
    require_fits(cols, USED, b.calculated_used, "The used total")
    require_fits(cols, COST, b.calculated_cost, "The total cost")
