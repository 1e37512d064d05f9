"""A fold adds a slice to a user's totals in place (`added_in_place`, on the upsert's conflicting row): the
same sums as `combined`, the algebra scans and verification use, for every kind of pair of slices."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import Engine, text

from core.store.ledger_sums import SUMS, added_in_place, combined
from tests.support.databases import SCHEMA

AMOUNTS = [600_000, 5_000_000]
LOGGED = ("{}", "{600000}", "{5000000}", "{600000,5000000}")
# (has_reset, reset_tokens, reset_at, reset_action)
RESETS = ((False, None, None, None), (True, 250_000, "2026-11-01T00:00:00Z", "plan_reset"))
FIRST_GRANTS = (None, "0001|a", "0002|b")


def slices() -> list[dict[str, Any]]:
    """Sums of every kind a slice holds: logged tier amounts, a reset or none, a first grant or none."""
    return [
        {
            "ledger_rows": 3 + i,
            "failed_rows": i % 2,
            "failed_tokens": 40 * i,
            "calculated_used": 1_000 + i,
            "calculated_cents": f"{i}.25",
            "first_grant_key": first,
            "logged_amounts": logged,
            "has_reset": reset[0],
            "reset_tokens": reset[1],
            "reset_at": reset[2],
            "reset_action": reset[3],
            "counted_used": 700 + i,
            "all_grants": 5_000 * i,
            "admin_deductions": 10 * i,
        }
        for i, (logged, reset, first) in enumerate(itertools.product(LOGGED, RESETS, FIRST_GRANTS))
    ]


def test_a_slice_added_in_place_is_the_combined_sums_of_both(engine: Engine) -> None:
    pairs = list(itertools.product(slices(), repeat=2))
    columns = ", ".join(SUMS)
    values = ", ".join(f":{c}" for c in SUMS)
    with engine.connect() as conn, conn.begin():
        for table in ("older", "newer", "totals"):
            conn.execute(
                text(f"CREATE TEMP TABLE {table} (LIKE {SCHEMA}.ledger_rollups INCLUDING ALL) ON COMMIT DROP")
            )
        for table, side in (("older", 0), ("newer", 1), ("totals", 0)):
            conn.execute(
                text(f"INSERT INTO {table} ({columns}) VALUES ({values})"),
                [{**pair[side], "user_id": f"u{i:04}"} for i, pair in enumerate(pairs)],
            )
        expected = conn.execute(
            text(f"SELECT {combined('o', 'n', AMOUNTS)} FROM older o JOIN newer n USING (user_id) ORDER BY 1")
        ).all()
        conn.execute(
            text(
                f"INSERT INTO totals AS o ({columns}) SELECT {columns} FROM newer"
                f" ON CONFLICT (user_id) DO UPDATE SET {added_in_place('o', 'EXCLUDED', AMOUNTS)}"
            )
        )
        added = conn.execute(text(f"SELECT {columns} FROM totals ORDER BY user_id")).all()
        # A new user of the rows since a fold has no totals: the newer slice's sums are theirs as they are.
        alone = conn.execute(
            text(f"SELECT {combined('o', 'n', AMOUNTS)} FROM newer n LEFT JOIN older o ON false ORDER BY 1")
        ).all()
        newer = conn.execute(text(f"SELECT {columns} FROM newer ORDER BY user_id")).all()
    assert len(added) == len(pairs) == 24 * 24
    assert added == expected
    assert alone == newer
    assert {tuple(row.logged_amounts) for row in added} >= {(), (600_000, 5_000_000)}
