"""Per-user ledger totals in the bot's schema, folded incrementally, so a fleet scan reads only recent rows.

`ledger_rollups` holds each user's `ledger_sums` over the rows at or before `rollup_state.watermark`; a
scan adds the rows after it, read live (core.store.scan), which equals a full scan at the scan's snapshot
as long as no row is inserted with a time at or before a watermark already folded. Such late rows come
from two places, and a fold catches both:

- transactions still in flight at a fold (a row's created_at is usually its transaction's start): the
  new watermark stays before the start of every open transaction on the primary, and
  TOKENS_ROLLUP_LAG_SECONDS behind the clock for timestamps written by an application's own clock;
- rows written with an older time: `rollup_hours` counts the folded rows of each of the last
  TOKENS_ROLLUP_RELOOK_HOURS hours; a fold counts them again (core.store.rollup_hours: one count, and
  hour by hour only when it grew), and re-reads in full (by the user_id index) every user with a row in
  an hour that gained rows. That count reads every row of those hours, so only one fold every
  TOKENS_ROLLUP_RELOOK_EVERY_MINUTES makes it; the folds between record the hours' counts of what they
  folded, which a late row does not change, so the next recount still finds it. Older than that,
  `tokens-bot rollup --full` re-folds everything, and `tokens-bot rollup --verify` reports any user
  whose totals differ from a full scan.

The ledger is append-only (rows are inserted, never updated or deleted): a changed row is only seen by a
full fold.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, text

from core.domain.rollups import FoldResult
from core.domain.tiers import Tiers
from core.settings import Settings
from core.store import rollup_hours
from core.store.columns import Columns
from core.store.ledger_sums import SUMS, added_in_place, between, slice_sums, tier_amounts, up_to
from core.store.pipeline import Statement, stream_rows
from core.store.rollup_state import config_of, rollups_table

# Rows of a standby's sums read per chunk as they are copied to the primary.
_BATCH = 1_000


def fold(
    primary: Connection,
    reader: Connection,
    cols: Columns,
    tiers: Tiers,
    settings: Settings,
    state: Any,
    watermark: datetime,
    *,
    full: bool,
    incremental_only: bool = False,
    local: bool = False,
) -> FoldResult:
    """Count the hours on `reader` (one snapshot), write the totals on `primary` (not committed).

    A full fold (asked for, the first, or after the settings changed) replaces every total; otherwise the
    rows between the two watermarks are added, and users with rows inserted late are re-read whole.
    `incremental_only` (the scheduler's folds) does nothing where a full fold is due: that one reads the
    whole ledger, and is `tokens-bot rollup`'s to run.

    The slices' sums are read on `reader` too, or, where it is a snapshot of the primary's own database
    (`local`), aggregated by the primary itself: a full fold's into a temporary table (see `_gather`), an
    incremental one's by the statement that adds them to the totals (see `_add`).
    """
    config = config_of(cols, tiers)
    reason = (
        "asked for"
        if full
        else "first fold"
        if state is None
        else "settings changed"
        if state["config"] != config
        else None
    )
    if reason and incremental_only:
        return FoldResult(ran=False, full_reason=reason)
    previous = None if reason else state["watermark"]
    relooked_hours = timedelta(hours=settings.tokens_rollup_relook_hours)
    new_low = rollup_hours.hour_of(watermark - relooked_hours)
    low = new_low if previous is None else rollup_hours.hour_of(previous - relooked_hours)
    params = {"previous": previous or watermark, "watermark": watermark, "low": low}
    relook = previous is None or _relook_due(state, watermark, settings)
    if previous is not None:
        # JIT compiling a statement costs about half a second: only whole-ledger reads earn it back.
        for conn in (primary, reader):
            conn.execute(text("SET LOCAL jit = off"))
    if previous is None:
        added = slice_sums(cols, tiers, up_to(cols, "t", "watermark"))
    else:
        added = slice_sums(cols, tiers, between(cols, "t", "previous", "watermark"))
    folded = None if previous is None else rollup_hours.folded_hours(primary, settings)
    # The reader's snapshot is older than any statement the primary runs now, so on the primary's own
    # database the hours are counted while the primary sums the new rows; a standby's reader streams them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        counting = pool.submit(rollup_hours.counted, reader, cols, params, folded, relook=relook)
        if not local:
            counting.result()
        if previous is None:
            users = _gather(primary, settings, "rollup_added", _Slice(reader, added, params, local))
            _replace_all(primary, settings)
        else:
            users = _add(primary, settings, _Slice(reader, added, params, local), tier_amounts(tiers))
        hours, late = counting.result()
    late_users = rollup_hours.late_users(reader, cols, late, params)
    if late_users:
        ids = f"t.user_id = ANY(CAST(:ids AS {cols.ledger.column('user_id').type}[]))"
        replaced = slice_sums(cols, tiers, f"{up_to(cols, 't', 'watermark')} AND {ids}")
        _replace(primary, settings, _Slice(reader, replaced, {**params, "ids": late_users}, local))
    kept = {h: rows for h, rows in hours.items() if h is None or h >= new_low}
    _record(primary, settings, config, watermark, kept, full=previous is None, relooked=relook)
    return FoldResult(
        ran=True,
        full=previous is None,
        full_reason=reason,
        previous=previous,
        watermark=watermark,
        users=users,
        relooked=relook,
        late_hours=len(late),
        late_users=len(late_users),
    )


def _relook_due(state: Any, watermark: datetime, settings: Settings) -> bool:
    """Whether this fold recounts the relooked hours: none did yet, or the last one that did folded up to
    TOKENS_ROLLUP_RELOOK_EVERY_MINUTES before this watermark (the watermark's clock, not this process's)."""
    every = timedelta(minutes=settings.tokens_rollup_relook_every_minutes)
    return state["relooked_to"] is None or watermark >= state["relooked_to"] + every


class _Slice(NamedTuple):
    """A slice's sums (`slice_sums`), its parameters, and where they are read: on `reader`, or, where it
    is a snapshot of the primary's own database (`local`), by the primary itself."""

    reader: Connection
    sums: str
    params: dict[str, Any]
    local: bool


def _gather(primary: Connection, settings: Settings, table: str, slice_: _Slice) -> int:
    """A slice's sums in a temporary table `table` on the primary; how many users it holds.

    On the primary's own database (a full fold: the whole ledger) one CREATE TABLE AS aggregates them in
    place (it may run in parallel, which an INSERT ... SELECT may not). Its snapshot, like that of `_add`'s
    statement, is later than the reader's, which counted the hours first: the sums then hold every row the
    counts saw, and a row committed in between is one more row in an hour, so the next fold re-reads its
    user as it would any row inserted late. From a standby the sums
    stream through this process (core.store.pipeline.stream_rows: not through a server-side cursor, which
    would keep the standby from aggregating a whole-ledger slice in parallel); memory stays one batch.
    """
    select = f"SELECT {', '.join(SUMS)} FROM {slice_.sums} s"
    if slice_.local:
        return primary.execute(
            text(f"CREATE TEMP TABLE {table} ON COMMIT DROP AS {select}"), slice_.params
        ).rowcount
    primary.execute(text(f"CREATE TEMP TABLE {table} (LIKE {rollups_table(settings)}) ON COMMIT DROP"))
    target = primary.connection.driver_connection
    assert target is not None
    copied = 0
    with target.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(SUMS)}) FROM STDIN") as copy:
        for row in stream_rows(slice_.reader, Statement(text(select), slice_.params), batch=_BATCH):
            copy.write_row(tuple(row.values()))
            copied += 1
    return copied


def _replace_all(primary: Connection, settings: Settings) -> None:
    """A full fold's sums (`rollup_added`) replace every total."""
    table = rollups_table(settings)
    columns = ", ".join(SUMS)
    primary.execute(text(f"DELETE FROM {table}"))
    primary.execute(text(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM rollup_added"))
    # Scans plan their joins on the table's statistics: a whole new table gets them at once.
    primary.execute(text(f"ANALYZE {table}"))


def _add(primary: Connection, settings: Settings, slice_: _Slice, amounts: list[int]) -> int:
    """Add a slice's sums to its users' totals, folded under the tier `amounts`; how many users that is.

    On the primary's own database one statement sums the slice and upserts it: no temporary table (its
    catalog rows, its statistics), and each user's totals are found once, by the upsert's own conflict
    check, rather than joined first. The slice's aggregation is then not parallel, which an incremental
    slice does not need. From a standby the sums are copied into a temporary table first (see `_gather`).
    """
    source, values = _source(primary, settings, "rollup_added", slice_)
    return _upsert(primary, settings, source, values, added_in_place("o", "EXCLUDED", amounts))


def _replace(primary: Connection, settings: Settings, slice_: _Slice) -> None:
    """Replace the totals of users re-read in full; only those whose sums differ are written."""
    source, values = _source(primary, settings, "rollup_replaced", slice_)
    folded, read = (", ".join(f"{a}.{c}" for c in SUMS[1:]) for a in ("o", "EXCLUDED"))
    replace = ", ".join(f"{c} = EXCLUDED.{c}" for c in SUMS[1:])
    _upsert(primary, settings, source, values, replace, where=f"({folded}) IS DISTINCT FROM ({read})")


def _source(
    primary: Connection, settings: Settings, table: str, slice_: _Slice
) -> tuple[str, dict[str, Any]]:
    """Where the primary reads a slice's sums from: the aggregation itself on its own database, else a
    temporary table the reader's sums are copied into; and that statement's parameters."""
    if slice_.local:
        return f"{slice_.sums} s", slice_.params
    _gather(primary, settings, table, slice_)
    return table, {}


def _upsert(
    primary: Connection,
    settings: Settings,
    source: str,
    params: dict[str, Any],
    update: str,
    *,
    where: str = "",
) -> int:
    """Insert the sums of `source` as new users' totals, or update existing ones by `update` (`o` the
    totals, EXCLUDED the sums), where `where` holds. In the order of the totals' key, which each conflict
    check walks down: one user's index pages are then those of the one before (86,000 users took a third
    less CPU so than in the aggregation's order)."""
    columns = ", ".join(SUMS)
    return primary.execute(
        text(
            f"INSERT INTO {rollups_table(settings)} AS o ({columns}) SELECT {columns} FROM {source}"
            f" ORDER BY user_id ON CONFLICT (user_id) DO UPDATE SET {update}"
            + (f" WHERE {where}" if where else "")
        ),
        params,
    ).rowcount


def _record(
    primary: Connection,
    settings: Settings,
    config: str,
    watermark: datetime,
    hours: dict[datetime | None, int],
    *,
    full: bool,
    relooked: bool,
) -> None:
    """The new watermark and the rows per relooked hour, in one statement: hours that left the relooked
    window are deleted, and only those whose count changed are written (most hours keep theirs); and, if
    this fold recounted them, its watermark as the last recount's."""
    schema = settings.tokens_schema
    primary.execute(
        text(
            f"""
            WITH hours AS (
                SELECT coalesce(h, '-infinity') AS hour, n
                FROM unnest(CAST(:hours AS timestamptz[]), CAST(:rows AS bigint[])) AS x(h, n)
            ), gone AS (
                DELETE FROM "{schema}".rollup_hours r WHERE NOT EXISTS (SELECT FROM hours WHERE hour = r.hour)
            ), counted AS (
                INSERT INTO "{schema}".rollup_hours AS r (hour, ledger_rows) SELECT hour, n FROM hours
                ON CONFLICT (hour) DO UPDATE SET ledger_rows = EXCLUDED.ledger_rows
                WHERE r.ledger_rows <> EXCLUDED.ledger_rows
            )
            INSERT INTO "{schema}".rollup_state AS s (id, watermark, config, folded_at, full_at, relooked_to)
            VALUES (1, :watermark, :config, now(), now(), :watermark)
            ON CONFLICT (id) DO UPDATE SET watermark = EXCLUDED.watermark, config = EXCLUDED.config,
                folded_at = EXCLUDED.folded_at,
                full_at = CASE WHEN :full THEN EXCLUDED.full_at ELSE s.full_at END,
                relooked_to = CASE WHEN :relooked THEN EXCLUDED.relooked_to ELSE s.relooked_to END
            """
        ),
        {
            "hours": list(hours),
            "rows": list(hours.values()),
            "watermark": watermark,
            "config": config,
            "full": full,
            "relooked": relooked,
        },
    )
