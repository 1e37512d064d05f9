"""The whole-fleet discrepancy scan as SQL: the check's balance arithmetic for every user in one pass.

Users, not ledger rows, are paged. Each user's ledger sums come from core.store.ledger_sums: over the
whole ledger (one parallel hash aggregation; the first grant is the smallest `Columns.history_key`, the
same row the check takes, since an ordered aggregate would force a serial sort of the ledger), or the
folded totals of core.store.rollups plus the same sums over the rows after their watermark.
"""

from __future__ import annotations

from core.domain.tiers import Tiers
from core.store.columns import Columns
from core.store.ledger_sums import after_watermark, combined, scan_columns, slice_sums, tier_amounts


def discrepancy_cte(
    cols: Columns, tiers: Tiers, *, chosen_users: bool = False, rollups: str | None = None
) -> str:
    """CTEs ending in `judged` (every user's balance) and `flagged` (those over `:minimum`).

    `chosen_users` narrows both tables to `:ids`, for re-reading a few users the digest picked.
    `rollups` names the bot's folded totals (core.store.rollups): the ledger is then read only after
    `:watermark`, and added to them; the sums are the full scan's at this snapshot.
    """
    p = "p"
    ledger_ids, profile_ids = (
        f"CAST(:ids AS {table.column('user_id').type}[])" for table in (cols.ledger, cols.profiles)
    )
    only_profiles = f"AND p.user_id = ANY({profile_ids})" if chosen_users else ""
    columns = f"{scan_columns(cols, tiers, 's')}, s.recent_tokens"
    fence = ""
    if rollups is None:
        where = f"t.user_id = ANY({ledger_ids})" if chosen_users else "true"
        sums = slice_sums(cols, tiers, where, recent=True)
        ledger = f"ledger AS (SELECT {columns}, s.ledger_user_id FROM {sums} s),"
        join = f"LEFT JOIN ledger l ON {cols.same_user('l.ledger_user_id', cols.ledger, 'p.user_id', cols.profiles)}"
    else:
        # Each profile meets its totals and its rows since the watermark by its own id, so the planner
        # sees two plain joins (a join on a full join's merged id would hide the tables' statistics).
        ledger = f"tail AS {slice_sums(cols, tiers, after_watermark(cols, 't'), recent=True)},"
        # A fence: each user's combined sums are computed once, not again wherever judged and flagged
        # use them (at 600,000 users that repetition cost seconds).
        fence = "OFFSET 0"
        join = f"""LEFT JOIN {rollups} o ON o.user_id = p.user_id::text
        LEFT JOIN tail n ON n.user_id = p.user_id::text
        CROSS JOIN LATERAL (
            SELECT {columns}
            FROM (SELECT {combined("o", "n")}, coalesce(n.recent_tokens, 0) AS recent_tokens) s
        ) l"""
    # Whether the tier amount was logged as a grant by the product (tokens-bot's own grants are approved
    # extras, as in the check).
    amounts = tier_amounts(tiers)
    tier_logged = (
        "CASE tg.amount " + " ".join(f"WHEN {a} THEN l.logged_{i}" for i, a in enumerate(amounts)) + " END"
        if amounts
        else "NULL::boolean"
    )
    return f"""
    tiers AS (
        SELECT key AS tier, value::numeric AS amount FROM jsonb_each_text(:tier_grants)
    ),
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
               CASE WHEN tg.amount IS NOT NULL THEN coalesce({tier_logged}, false)
                    ELSE l.first_grant IS NOT NULL END AS assumed_grant_logged,
               coalesce(l.recent_tokens, 0) AS recent_tokens
        FROM {cols.current_profiles("p")}
        {join}
        LEFT JOIN tiers tg ON tg.tier = {cols.tier(p)}
        WHERE true {only_profiles}
        {fence}
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
        -- A write still in progress (ledger row in, balance not yet) can explain at most the tokens of
        -- the rows inside the grace window: only a discrepancy within that allowance is deferred.
        SELECT j.*, w.worst, w.worst - j.recent_tokens <= :minimum AS deferred
        FROM judged j
        CROSS JOIN LATERAL (
            SELECT greatest(abs(j.current_used - j.calculated_used),
                            abs(j.current_remaining - j.expected_remaining)) AS worst
        ) w
        WHERE w.worst > :minimum
    )"""
