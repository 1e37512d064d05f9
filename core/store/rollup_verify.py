"""`tokens-bot rollup --verify`: the folded totals against a full scan of the same rows, user by user.

Both are read in the caller's one snapshot, so a difference is a real one: a row the folds have not
caught yet (one inserted late since the last recount of the relooked hours, core.store.rollup_hours), a
row they miss (inserted later than TOKENS_ROLLUP_RELOOK_HOURS after its time, or changed in place), or a
bug.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.domain.rollups import Mismatch, VerifyResult
from core.domain.tiers import Tiers
from core.settings import Settings
from core.store.columns import Columns
from core.store.ledger_sums import SUMS, slice_sums, up_to
from core.store.rollup_state import rollups_table, state


def verify(conn: Connection, cols: Columns, tiers: Tiers, settings: Settings) -> VerifyResult:
    """Every user whose folded totals differ from the sums of their rows up to the watermark."""
    folded = state(conn, settings)
    if folded is None:
        return VerifyResult(watermark=None, users=0, mismatches=[])
    compared = SUMS[1:]
    pairs = ", ".join(f"r.{c}::text AS r_{c}, f.{c}::text AS f_{c}" for c in compared)
    flags = ", ".join(f"r.{c} IS DISTINCT FROM f.{c} AS d_{c}" for c in compared)
    rows = (
        conn.execute(
            text(
                f"""
            WITH compared AS (
                SELECT coalesce(r.user_id, f.user_id) AS user_id, r.user_id IS NULL OR f.user_id IS NULL AS missing,
                       {pairs}, {flags}
                FROM {rollups_table(settings)} r
                FULL JOIN {slice_sums(cols, tiers, up_to(cols, "t", "watermark"))} f ON f.user_id = r.user_id
            )
            SELECT c.*, (SELECT count(*) FROM compared) AS users FROM compared c
            WHERE c.missing OR {" OR ".join(f"c.d_{c}" for c in compared)}
            ORDER BY c.user_id
            """
            ),
            {"watermark": folded["watermark"]},
        )
        .mappings()
        .all()
    )
    mismatches = [
        Mismatch(
            user_id=row["user_id"],
            fields={c: (_shown(row[f"r_{c}"]), _shown(row[f"f_{c}"])) for c in compared if row[f"d_{c}"]},
        )
        for row in rows
    ]
    users = rows[0]["users"] if rows else _compared_users(conn, settings)
    return VerifyResult(watermark=folded["watermark"], users=int(users), mismatches=mismatches)


def _compared_users(conn: Connection, settings: Settings) -> int:
    """With nothing to report, the users compared are those with totals (the ledger's, since they agree)."""
    return int(conn.execute(text(f"SELECT count(*) FROM {rollups_table(settings)}")).scalar_one())


def _shown(value: str | None) -> str:
    return "none" if value is None else value
