"""The finding signals of the largest discrepancies, kept between fleet scans in the bot's schema.

Grouping `/tokens discrepancies` by cause needs the findings of its largest users, and those need the
signals of every one of their rows (core.store.signals): at 30M ledger rows the 5,000 largest hold from
0.2M to over 1M rows, seconds of window sorts on every list. The scheduler (and `tokens-bot rollup`)
counts them once and keeps them here; a list takes the kept signals of each user whose ledger still has
the number of rows they were counted over, under the same settings, and counts the others live.

On an append-only ledger the same number of rows is the same rows, the promise the folded totals rest on
too (core.store.rollups): a row changed in place is only seen after `tokens-bot rollup --full`, which
forgets every kept signal.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from core.settings import Settings
from core.store.columns import Columns
from core.store.rollup_state import rows_reading
from core.store.signals import prices_json


def _table(settings: Settings) -> str:
    return f'"{settings.tokens_schema}".ledger_signals'


def signals_config(cols: Columns, settings: Settings) -> str:
    """What a user's signals depend on besides their rows: signals counted under other settings are not used."""
    config = {
        **rows_reading(cols),
        "prices": prices_json(settings.tokens_model_prices),
        "window": settings.tokens_duplicate_window_seconds,
        "tolerance": str(settings.tokens_cost_drift_tolerance),
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def kept_signals(
    conn: Connection, cols: Columns, settings: Settings, user_ids: list[str]
) -> dict[str, tuple[int, dict[str, Any]]]:
    """The kept signals of these users under the current settings, each with the number of ledger rows it
    was counted over (exact numbers: they were kept as decimal strings)."""
    if not user_ids:
        return {}
    rows = conn.execute(
        text(
            f"SELECT user_id, ledger_rows, signals FROM {_table(settings)} WHERE user_id = ANY(:ids) AND config = :c"
        ),
        {"ids": user_ids, "c": signals_config(cols, settings)},
    )
    return {
        row.user_id: (int(row.ledger_rows), {name: Decimal(value) for name, value in row.signals.items()})
        for row in rows
    }


def keep_signals(
    conn: Connection, cols: Columns, settings: Settings, counted: dict[str, tuple[int, dict[str, Any]]]
) -> None:
    """Keep each user's signals with the number of ledger rows they were counted over."""
    if not counted:
        return
    conn.execute(
        text(
            f"""
            INSERT INTO {_table(settings)} (user_id, ledger_rows, config, signals)
            SELECT e->>'user_id', (e->>'ledger_rows')::numeric, :c, e->'signals' FROM jsonb_array_elements(:kept) e
            ON CONFLICT (user_id) DO UPDATE SET ledger_rows = EXCLUDED.ledger_rows, config = EXCLUDED.config,
                signals = EXCLUDED.signals, counted_at = now()
            """
        ).bindparams(bindparam("kept", type_=JSONB)),
        {
            "kept": [
                {
                    "user_id": u,
                    "ledger_rows": str(rows),
                    "signals": {k: str(v) for k, v in signals.items()},
                }
                for u, (rows, signals) in counted.items()
            ],
            "c": signals_config(cols, settings),
        },
    )


def forget_signals(conn: Connection, settings: Settings, *, keep: list[str] | None = None) -> int:
    """Forget the kept signals of every user not in `keep` (all of them without it)."""
    where = "WHERE user_id <> ALL(CAST(:keep AS text[]))" if keep is not None else ""
    return conn.execute(text(f"DELETE FROM {_table(settings)} {where}"), {"keep": keep or []}).rowcount
