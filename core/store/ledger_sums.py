"""A user's ledger sums over any slice of the ledger, and how two slices add up: the algebra the fleet scan,
the rollups (core.store.rollups) and their verification share, so folded totals and a full scan are the
same arithmetic.

A slice's sums are those of the check (core.store.balances): rows, failed rows and their usage tokens,
successful usage and its cents, the first grant (its `Columns.history_key`, so slices combine by taking
the smallest), which tier amounts the product logged as a grant, and, where resets are configured, the
slice's latest reset with the sums after it. Two slices combine when every row of the newer one comes
after every row of the older one in the ledger's order (by time, a NULL time first): the newer slice's
reset, if it has one, replaces the older one's and what was counted after it.
"""

from __future__ import annotations

from core.domain.tiers import Tiers
from core.store.balances import RESET_ORDER, reset_columns
from core.store.columns import Columns

# Sums that add up across slices whatever resets they hold.
ADDED = ("ledger_rows", "failed_rows", "failed_tokens", "calculated_used", "calculated_cents")
# Sums counted after the slice's latest reset (every row without one): a newer reset restarts them.
AFTER_RESET = ("counted_used", "all_grants", "admin_deductions")
RESET = ("reset_tokens", "reset_at", "reset_action")
_TIMESTAMPS = ("timestamp with time zone", "timestamp without time zone")
# Every column of a slice's sums, in the order of the bot's ledger_rollups table (migration 0008).
SUMS = ("user_id", *ADDED, "first_grant_key", "logged_amounts", "has_reset", *RESET, *AFTER_RESET)


def tier_amounts(tiers: Tiers) -> list[int]:
    """The tier amounts whose logging is tracked, in a fixed order (folded totals record them)."""
    return sorted({int(a) for a in tiers.amounts.values()})


def slice_sums(cols: Columns, tiers: Tiers, where: str, *, recent: bool = False) -> str:
    """A subquery: per user with a row matching `where` (alias `t`), the slice's sums (`SUMS`), and the
    id in the ledger's own type (`ledger_user_id`), which joins the profiles by their key's statistics.

    `recent` adds `recent_tokens` (tokens of rows inside the scan's grace window, `:grace` seconds).
    Aggregates stay parallel-safe (no ordered or DISTINCT aggregate), so a whole-ledger slice is one
    parallel hash aggregation.
    """
    t = "t"
    ok, tokens, usage = cols.success(t), cols.tokens(t), cols.is_usage(t)
    grant = f"{ok} AND {cols.is_grant(t)}"
    after = cols.after_reset(t, "r")
    logged = ", ".join(
        f"CASE WHEN bool_or({grant} AND {tokens} = {a} AND NOT {cols.written_by_bot(t)}) THEN {a} END"
        for a in tier_amounts(tiers)
    )
    resets, join_resets, reset = (
        "",
        "",
        (
            "false AS has_reset, NULL::numeric AS reset_tokens, NULL::timestamptz AS reset_at,"
            " NULL::text AS reset_action,"
        ),
    )
    if cols.reset_actions:
        resets = f"""WITH resets AS (
            SELECT DISTINCT ON (t.user_id) t.user_id, {reset_columns(cols)}
            FROM token_usage t
            WHERE ({where}) AND {ok} AND {cols.is_reset(t)}
            ORDER BY t.user_id, {RESET_ORDER}
        )"""
        join_resets = "LEFT JOIN resets r ON r.user_id = t.user_id"
        reset = (
            "bool_or(r.user_id IS NOT NULL) AS has_reset, min(r.reset_tokens) AS reset_tokens,"
            " min(r.reset_at) AS reset_at, min(r.reset_action) AS reset_action,"
        )
    recent_tokens = (
        f", coalesce(sum({tokens}) FILTER (WHERE {cols.is_recent(t, 'make_interval(secs => :grace)')}), 0)"
        " AS recent_tokens"
        if recent
        else ""
    )
    return f"""({resets}
        SELECT t.user_id::text AS user_id, t.user_id AS ledger_user_id,
               count(*) AS ledger_rows,
               count(*) FILTER (WHERE NOT {ok}) AS failed_rows,
               coalesce(sum({tokens}) FILTER (WHERE NOT {ok} AND {usage}), 0) AS failed_tokens,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {usage}), 0) AS calculated_used,
               coalesce(sum({cols.cents(t)}) FILTER (WHERE {ok} AND {usage}), 0) AS calculated_cents,
               min({cols.history_key(t)}) FILTER (WHERE {grant}) AS first_grant_key,
               {f"array_remove(ARRAY[{logged}]::numeric[], NULL)" if logged else "'{}'::numeric[]"}
                   AS logged_amounts,
               {reset}
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {usage} AND {after}), 0) AS counted_used,
               coalesce(sum({tokens}) FILTER (WHERE {grant} AND {after}), 0) AS all_grants,
               coalesce(sum({tokens}) FILTER (WHERE {ok} AND {cols.is_deduct(t)} AND {after}), 0)
                   AS admin_deductions{recent_tokens}
        FROM token_usage t {join_resets}
        WHERE ({where}) AND t.user_id IS NOT NULL
        GROUP BY t.user_id
    )"""


def combined(older: str, newer: str, amounts: list[int]) -> str:
    """Select expressions (`SUMS`, by name) adding the slice `newer` to `older`; either may be absent (a
    left join's NULLs), and every row of `newer` comes after every row of `older`.

    Where `newer` is absent (in a scan, most users: no rows since the watermark), the older slice's sums
    are taken as they are, rather than zeros added to each.
    """
    o, n = older, newer
    reset_anew = f"coalesce({n}.has_reset, false)"
    exprs = {"user_id": f"coalesce({o}.user_id, {n}.user_id)"}
    exprs |= {c: f"coalesce({o}.{c}, 0) + coalesce({n}.{c}, 0)" for c in ADDED}
    exprs |= {
        "first_grant_key": f"least({o}.first_grant_key, {n}.first_grant_key)",
        "logged_amounts": _logged_merged(o, n, amounts),
        "has_reset": f"{reset_anew} OR coalesce({o}.has_reset, false)",
    }
    exprs |= {c: f"CASE WHEN {reset_anew} THEN {n}.{c} ELSE {o}.{c} END" for c in RESET}
    exprs |= {
        c: f"CASE WHEN {reset_anew} THEN {n}.{c} ELSE coalesce({o}.{c}, 0) + coalesce({n}.{c}, 0) END"
        for c in AFTER_RESET
    }
    return ",\n               ".join(
        f"CASE WHEN {n}.user_id IS NULL THEN {o}.{c} ELSE {e} END AS {c}" for c, e in exprs.items()
    )


def _logged_merged(o: str, n: str, amounts: list[int]) -> str:
    """The sorted union of the logged amounts of slice `o` (whose may be NULL: no such slice) and slice
    `n`, each one of the tier `amounts` they are folded under (sorted, as `tier_amounts`).

    Each slice's amounts are sorted and distinct, so where one slice's are among the other's the union is
    that other array; any other union is built from the tier amounts (where `o`'s are NULL, it is `n`'s),
    not by a sorting subquery, which PostgreSQL would run in the leader of a parallel scan only.
    """
    either = ", ".join(
        f"CASE WHEN {a} = ANY({o}.logged_amounts) OR {a} = ANY({n}.logged_amounts) THEN {a} END"
        for a in amounts
    )
    union = f"array_remove(ARRAY[{either}]::numeric[], NULL)" if amounts else "'{}'::numeric[]"
    return (
        f"CASE WHEN {n}.logged_amounts <@ {o}.logged_amounts THEN {o}.logged_amounts"
        f" WHEN {o}.logged_amounts <@ {n}.logged_amounts THEN {n}.logged_amounts ELSE {union} END"
    )


def scan_columns(cols: Columns, tiers: Tiers, s: str) -> str:
    """What the scan's `ledger` table holds, from sums `s`: the first grant's tokens, and per tier amount
    whether the product logged it (`logged_<i>`, in `tier_amounts` order)."""
    logged = "".join(
        f", {a} = ANY({s}.logged_amounts) AS logged_{i}" for i, a in enumerate(tier_amounts(tiers))
    )
    return (
        f"{s}.user_id, {', '.join(f'{s}.{c}' for c in (*ADDED, *RESET, *AFTER_RESET))},"
        f" {cols.tokens_of_key(f'{s}.first_grant_key')} AS first_grant{logged}"
    )


def foldable(cols: Columns) -> bool:
    """Rows can be sliced by time only where created_at is a timestamp (with or without time zone)."""
    return cols.ledger.has("created_at") and cols.ledger.column("created_at").base in _TIMESTAMPS


def _bound(cols: Columns, param: str) -> str:
    """A timestamptz parameter in the raw column's type, so an index on created_at serves the comparison."""
    if cols.ledger.column("created_at").base == "timestamp with time zone":
        return f"CAST(:{param} AS timestamptz)"
    return f"(CAST(:{param} AS timestamptz) AT TIME ZONE 'UTC')"


def after_watermark(cols: Columns, a: str, param: str = "watermark") -> str:
    """The rows not folded yet: later than the watermark (never a row without a usable time)."""
    return f"{a}.created_at > {_bound(cols, param)}"


def up_to(cols: Columns, a: str, param: str) -> str:
    """The rows a fold up to `param` holds: at or before it, and those without a usable time."""
    return f"({a}.created_at <= {_bound(cols, param)} OR {a}.created_at IS NULL)"


def between(cols: Columns, a: str, low: str, high: str) -> str:
    """Rows later than `low` and at or before `high`."""
    return f"({a}.created_at > {_bound(cols, low)} AND {a}.created_at <= {_bound(cols, high)})"


def from_hour(cols: Columns, a: str, param: str) -> str:
    """Rows at or after `param` (an hour's start)."""
    return f"{a}.created_at >= {_bound(cols, param)}"


def no_time(a: str) -> str:
    """Rows without a usable time: they sort before every other row, so every fold holds them."""
    return f"({a}.created_at IS NULL OR {a}.created_at = '-infinity')"


def added_in_place(older: str, newer: str, amounts: list[int]) -> str:
    """`combined`'s sums as an UPDATE's SET list (every sum but user_id), where both slices are present:
    an upsert's conflicting totals `older` and the new slice `newer` (its EXCLUDED row), folded under the
    tier `amounts`. The columns of both are NOT NULL where `combined` adds zeros for an absent slice, so
    the sums are added as they are: a fold updates tens of thousands of rows this way and each saved
    expression counts."""
    o, n = older, newer
    exprs = {c: f"{o}.{c} + {n}.{c}" for c in ADDED}
    exprs |= {
        "first_grant_key": f"least({o}.first_grant_key, {n}.first_grant_key)",
        "logged_amounts": _logged_merged(o, n, amounts),
        "has_reset": f"{n}.has_reset OR {o}.has_reset",
    }
    exprs |= {c: f"CASE WHEN {n}.has_reset THEN {n}.{c} ELSE {o}.{c} END" for c in RESET}
    exprs |= {c: f"CASE WHEN {n}.has_reset THEN {n}.{c} ELSE {o}.{c} + {n}.{c} END" for c in AFTER_RESET}
    return ", ".join(f"{c} = {exprs[c]}" for c in SUMS[1:])
