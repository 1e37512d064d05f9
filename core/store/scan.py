"""The whole-fleet discrepancy scan as SQL: the check's balance arithmetic for every user in one pass.

Users, not ledger rows, are paged. Each user's ledger sums come from core.store.ledger_sums: over the
whole ledger (one parallel hash aggregation; the first grant is the smallest `Columns.history_key`, the
same row the check takes, since an ordered aggregate would force a serial sort of the ledger), or the
folded totals of core.store.rollups plus the same sums over the rows after their watermark.
"""

from __future__ import annotations

from core.domain.tiers import Tiers
from core.store.columns import Columns
from core.store.ledger_sums import (
    AFTER_RESET,
    after_watermark,
    combined,
    scan_columns,
    slice_sums,
    tier_amounts,
)
from core.store.profile_columns import REMAINING, USED


def _ledger(
    cols: Columns, tiers: Tiers, *, chosen_users: bool, rollups: str | None, light: bool = False
) -> tuple[str, str]:
    """The CTE a profile's ledger sums need and the joins that give each profile `p` its sums `l`
    (`scan_columns` and `recent_tokens`, or with `light` only what `scored_cte` reads).

    With `rollups` (the bot's folded totals, core.store.rollups), the rows after `:watermark` are summed
    per user (`tail`), and each profile meets its totals and its tail in two left joins: only users with
    such rows have the two added up, every other user's totals are used as folded (at 600,000 users,
    adding zeros to each cost a second). Joined from the profiles rather than to each other (a full
    join), the totals are read by a parallel hash join: PostgreSQL 15 runs no full join in parallel.
    `chosen_users` narrows the ledger's rows to `:ids`.
    """
    ledger_ids = f"CAST(:ids AS {cols.ledger.column('user_id').type}[])"
    picked = _scored_columns(tiers, "s") if light else scan_columns(cols, tiers, "s")
    columns = f"{picked}, s.recent_tokens"
    if rollups is None:
        where = f"t.user_id = ANY({ledger_ids})" if chosen_users else "true"
        sums = slice_sums(cols, tiers, where, recent=True)
        ledger = f"ledger AS (SELECT {columns}, s.ledger_user_id FROM {sums} s),"
        join = f"LEFT JOIN ledger l ON {cols.same_user('l.ledger_user_id', cols.ledger, 'p.user_id', cols.profiles)}"
        return ledger, join
    tail_where = after_watermark(cols, "t")
    if chosen_users:
        tail_where += f" AND t.user_id = ANY({ledger_ids})"
        rollups = f"(SELECT * FROM {rollups} WHERE user_id = ANY(CAST(:ids AS text[])))"
    sums = combined("o", "n", tier_amounts(tiers))
    join = f"""LEFT JOIN {rollups} o ON o.user_id = p.user_id::text
        LEFT JOIN tail n ON n.user_id = p.user_id::text
        CROSS JOIN LATERAL (
            SELECT {columns} FROM (SELECT {sums}, coalesce(n.recent_tokens, 0) AS recent_tokens) s
        ) l"""
    return f"tail AS {slice_sums(cols, tiers, tail_where, recent=True)},", join


def _scored_columns(tiers: Tiers, s: str) -> str:
    """Of `scan_columns`, what `scored_cte` reads: at 600,000 users, each column more costs."""
    logged = "".join(
        f", {a} = ANY({s}.logged_amounts) AS logged_{i}" for i, a in enumerate(tier_amounts(tiers))
    )
    sums = ", ".join(f"{s}.{c}" for c in ("user_id", "calculated_used", "reset_tokens", *AFTER_RESET))
    return f"{sums}{logged}"


def _tier_logged(tiers: Tiers) -> str:
    """Whether the user's tier amount `tg.amount` was logged as a grant by the product (tokens-bot's own
    grants are approved extras, as in the check); NULL where the amount is not a tracked one."""
    amounts = tier_amounts(tiers)
    if not amounts:
        return "NULL::boolean"
    return "CASE tg.amount " + " ".join(f"WHEN {a} THEN l.logged_{i}" for i, a in enumerate(amounts)) + " END"


# Typed by the function, so each amount is read once per tier, not cast again wherever a user's row
# refers to it (an inlined `value::numeric` is evaluated at every use, for every user).
_TIERS = """tiers AS (
        SELECT tier, amount FROM jsonb_to_recordset(:tier_grants) AS g(tier text, amount numeric)
    ),"""


def tier_grants(tiers: Tiers) -> list[dict[str, str]]:
    """The `:tier_grants` parameter of the scans' SQL (bound as JSONB): amounts as text, so exact."""
    return [{"tier": tier, "amount": str(amount)} for tier, amount in tiers.amounts.items()]


# A write still in progress (ledger row in, balance not yet) can explain at most the tokens of the rows
# inside the grace window: only a discrepancy within that allowance is deferred.
_DEFERRED = "w.worst - {r}.recent_tokens <= :minimum AS deferred"


def scored_cte(cols: Columns, tiers: Tiers, *, rollups: str | None = None) -> str:
    """CTEs ending in `scored`: every user over `:minimum`, with the two discrepancies, the worst and whether
    it is deferred, and nothing else.

    The least arithmetic that decides who is discrepant, so a scan of every user stays cheap; the judged
    balances of `discrepancy_cte` are then read for the users shown. The expected remaining is `judged`'s:
    a reset replaces the initial grant; else an unlogged tier amount is added; else a first grant is both
    the initial grant and a grant row, so it cancels out.
    """
    ledger, join = _ledger(cols, tiers, chosen_users=False, rollups=rollups, light=True)
    p = "p"
    return f"""
    {_TIERS}
    {ledger}
    discrepancies AS (
        SELECT p.user_id::text AS user_id,
               {cols.balance(p, USED)} - coalesce(l.calculated_used, 0) AS used_discrepancy,
               {cols.balance(p, REMAINING)} - (
                   coalesce(l.all_grants, 0) - coalesce(l.counted_used, 0) - coalesce(l.admin_deductions, 0)
                   + CASE WHEN l.reset_tokens IS NOT NULL THEN l.reset_tokens
                          WHEN tg.amount IS NULL OR coalesce({_tier_logged(tiers)}, false) THEN 0
                          ELSE tg.amount END) AS remaining_discrepancy,
               coalesce(l.recent_tokens, 0) AS recent_tokens
        FROM {cols.current_profiles("p")}
        {join}
        LEFT JOIN tiers tg ON tg.tier = {cols.tier(p)}
    ),
    scored AS (
        SELECT d.user_id, w.worst, d.used_discrepancy, d.remaining_discrepancy, {_DEFERRED.format(r="d")}
        FROM discrepancies d
        CROSS JOIN LATERAL (
            SELECT greatest(abs(d.used_discrepancy), abs(d.remaining_discrepancy)) AS worst
        ) w
        WHERE w.worst > :minimum
    )"""


def discrepancy_cte(
    cols: Columns, tiers: Tiers, *, chosen_users: bool = False, rollups: str | None = None
) -> str:
    """CTEs ending in `judged` (every user's balance) and `flagged` (those over `:minimum`).

    `chosen_users` narrows both tables to `:ids`: the users a page shows, or a few the digest picked.
    `rollups` names the bot's folded totals (core.store.rollups): the ledger is then read only after
    `:watermark`, and added to them; the sums are the full scan's at this snapshot.
    """
    p = "p"
    profile_ids = f"CAST(:ids AS {cols.profiles.column('user_id').type}[])"
    only_profiles = f"AND p.user_id = ANY({profile_ids})" if chosen_users else ""
    ledger, join = _ledger(cols, tiers, chosen_users=chosen_users, rollups=rollups)
    return f"""
    {_TIERS}
    {ledger}
    balances AS (
        SELECT p.user_id::text AS user_id,
               {cols.profile_balances(p)},
               l.reset_tokens, l.reset_at, l.reset_action,
               coalesce(l.ledger_rows, 0) AS ledger_rows,
               coalesce(l.failed_rows, 0) AS failed_rows,
               coalesce(l.failed_tokens, 0) AS failed_tokens,
               coalesce(l.calculated_used, 0) AS calculated_used,
               coalesce(l.counted_used, 0) AS counted_used,
               round(coalesce(l.calculated_cents, 0) / {cols.cost_divisor}, {cols.shape.cost_scale}) AS calculated_cost,
               coalesce(l.admin_deductions, 0) AS admin_deductions,
               coalesce(l.all_grants, 0) AS all_grants,
               l.first_grant,
               tg.amount AS tier_amount,
               -- As choose_initial_grant: a tier amount counts as logged when a grant of that amount
               -- exists that tokens-bot did not write; a first grant (the bot's too) is logged by
               -- definition, so it is counted once either way.
               CASE WHEN tg.amount IS NOT NULL THEN coalesce({_tier_logged(tiers)}, false)
                    ELSE l.first_grant IS NOT NULL END AS assumed_grant_logged,
               coalesce(l.recent_tokens, 0) AS recent_tokens
        FROM {cols.current_profiles("p")}
        {join}
        LEFT JOIN tiers tg ON tg.tier = {cols.tier(p)}
        WHERE true {only_profiles}
        -- A fence: each user's sums are computed once, not again wherever judged and flagged use them.
        OFFSET 0
    ),
    judged AS (
        SELECT b.*, g.admin_grants,
               g.initial_grant + g.admin_grants - b.counted_used - b.admin_deductions AS expected_remaining
        FROM balances b
        -- A reset replaces the initial grant; otherwise the tier, else the first grant. Never counted
        -- twice: a grant row that is the initial grant is not also an extra grant.
        CROSS JOIN LATERAL (
            SELECT coalesce(b.reset_tokens, b.tier_amount, b.first_grant, 0) AS initial_grant,
                   b.all_grants - CASE WHEN b.reset_tokens IS NULL AND b.assumed_grant_logged
                                       THEN coalesce(b.tier_amount, b.first_grant, 0) ELSE 0 END AS admin_grants
        ) g
    ),
    flagged AS (
        SELECT j.*, w.worst, {_DEFERRED.format(r="j")}
        FROM judged j
        CROSS JOIN LATERAL (
            SELECT greatest(abs(j.current_used - j.calculated_used),
                            abs(j.current_remaining - j.expected_remaining)) AS worst
        ) w
        WHERE w.worst > :minimum
    )"""
