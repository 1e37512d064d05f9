"""Which folded hours gained rows since the previous fold: how a fold finds rows inserted late.

`rollup_hours` holds, for each of the last TOKENS_ROLLUP_RELOOK_HOURS hours (and for the rows without a
time), how many ledger rows the totals hold. Rows are only ever added to the ledger, so an hour whose
folded rows now count more than that gained a row with an older time after it was folded, and the users
with a row in it are re-read in full (core.store.rollups). See core.store.rollups for what is promised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from core.settings import Settings
from core.store.columns import Columns
from core.store.ledger_sums import after_watermark, between, from_hour, no_time, up_to


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour(cols: Columns) -> str:
    """A row's hour (UTC); NULL for rows without a usable time, which are counted as one more hour.

    date_bin from the epoch is date_trunc('hour', ..., 'UTC') in arithmetic alone, without a time zone
    conversion per row: the hours are counted over every row of the last TOKENS_ROLLUP_RELOOK_HOURS.
    """
    return (
        f"CASE WHEN NOT {no_time('t')} THEN date_bin('1 hour', {cols.created('t')}, timestamptz 'epoch') END"
    )


def counted(
    reader: Connection,
    cols: Columns,
    params: dict[str, Any],
    folded: dict[datetime | None, int] | None,
    *,
    relook: bool,
) -> tuple[dict[datetime | None, int], list[datetime | None]]:
    """Rows up to `:watermark` per hour from `:low` (and without a time), and the hours that gained rows
    up to `:previous` since the previous fold recorded theirs (`folded`; None for a full fold).

    The folded rows of those hours are counted as one number first: rows are only ever added, so when it
    is the sum the previous fold recorded, no hour gained any, and only the new rows are counted by hour.
    Otherwise every hour is counted again, to find the hours that did. Without `relook` the folded rows
    are not counted: the hours hold what the previous fold recorded plus the new rows, and a row inserted
    late since is found by the next fold that relooks.
    """
    if folded is None:
        return {h: rows for h, (_, rows) in _count_hours(reader, cols, params).items()}, []
    folded_rows = f"""
        SELECT NULL::timestamptz AS hour, count(*) AS rows FROM token_usage t
        WHERE ({from_hour(cols, "t", "low")} AND {up_to(cols, "t", "previous")}) OR {no_time("t")}
        UNION ALL"""
    new_rows = f"""
        SELECT {_hour(cols)} AS hour, count(*) AS rows FROM token_usage t
        WHERE {between(cols, "t", "previous", "watermark")} GROUP BY 1"""
    sql = f"{folded_rows}{new_rows}" if relook else new_rows
    new = {r.hour: int(r.rows) for r in reader.execute(text(sql), params)}
    if not relook or new.pop(None, 0) == sum(folded.values()):
        return {h: folded.get(h, 0) + new.get(h, 0) for h in folded.keys() | new.keys()}, []
    counted = _count_hours(reader, cols, params)
    late = [h for h, (settled, _) in counted.items() if settled > folded.get(h, 0)]
    return {h: rows for h, (_, rows) in counted.items()}, late


def _count_hours(
    reader: Connection, cols: Columns, params: dict[str, Any]
) -> dict[datetime | None, tuple[int, int]]:
    """Per hour from `:low`, and for the rows without a time: rows up to `:previous`, up to `:watermark`."""
    rows = reader.execute(
        text(
            f"""
            SELECT {_hour(cols)} AS hour,
                   count(*) FILTER (WHERE NOT coalesce({after_watermark(cols, "t", "previous")}, false)) AS settled,
                   count(*) AS rows
            FROM token_usage t
            WHERE ({from_hour(cols, "t", "low")} AND {up_to(cols, "t", "watermark")}) OR {no_time("t")}
            GROUP BY 1
            """
        ),
        params,
    )
    return {r.hour: (int(r.settled), int(r.rows)) for r in rows}


def folded_hours(primary: Connection, settings: Settings) -> dict[datetime | None, int]:
    """The rows per hour the totals hold, as the previous fold recorded them."""
    rows = primary.execute(
        text(
            f"SELECT nullif(hour, '-infinity') AS hour, ledger_rows"
            f' FROM "{settings.tokens_schema}".rollup_hours'
        )
    )
    return {r.hour: int(r.ledger_rows) for r in rows}


def late_users(
    reader: Connection, cols: Columns, hours: list[datetime | None], params: dict[str, Any]
) -> list[str]:
    """Users with a row, up to the previous watermark, in an hour that gained rows since it was folded."""
    if not hours:
        return []
    dated = [h for h in hours if h is not None]
    undated = f"OR {no_time('t')}" if None in hours else ""
    rows = reader.execute(
        text(
            f"""
            SELECT DISTINCT t.user_id::text FROM token_usage t
            WHERE t.user_id IS NOT NULL
              AND (({from_hour(cols, "t", "low")} AND {up_to(cols, "t", "previous")}
                    AND {_hour(cols)} = ANY(CAST(:hours AS timestamptz[]))) {undated})
            """
        ),
        {**params, "hours": dated},
    )
    return [r[0] for r in rows]
