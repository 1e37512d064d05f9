"""Everything `/tokens check` shows of one user, read in one round trip.

The profile, the balance pass, the finding signals, the breakdown and a page of operations are the
same statements the other use cases run (each built once per product shape, so psycopg prepares it),
pipelined on the use case's connection: one snapshot, one round trip, the exact values of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import Connection

from core.domain.models import Balance, BreakdownRow, LedgerSnapshot, Operation, UserRef
from core.domain.tiers import Tiers
from core.settings import Settings
from core.store.balances import balance_of, balance_params, balance_sql
from core.store.columns import Columns
from core.store.ledger import (
    breakdown_of,
    breakdown_statement,
    operations_of,
    operations_statement,
    snapshot_of_breakdown,
)
from core.store.pipeline import Statement, defer, fetch_all, settings_statement
from core.store.signals import ledger_signals_sql, signals_params
from core.store.users import profile_sql, user_ref

# Set for the check's own transaction, ahead of its reads in the same round trip and in the same statement
# as the transaction's own settings when those are still to be sent (a check by id). Every read is of one
# user by id, so one generic plan fits a user of 40 rows and one of 20,000 alike: without this,
# PostgreSQL kept choosing custom plans and planned every statement afresh on every check, most of a
# typical check's server time. And a heavy user's estimated cost passed jit_above_cost, so each check
# compiled its signals statement to machine code (about 100 ms) to save a few.
#
# The generic plan of a statement grouping one user's rows estimates a hundred rows, so it groups them by
# sorting; a heavy user's 20,000 rows then take 3 ms more to sort than to hash, in each of the balance
# pass and the breakdown. Sorting is turned off for those two only: their groups need no order (the
# breakdown's few groups are still sorted at the end), while the signals need sorts for their windows
# and the operations page, without sorting, would walk a whole index for the newest rows.
_PLANNER = {"plan_cache_mode": "force_generic_plan", "jit": "off", "enable_sort": "off"}
_SORTING = settings_statement({"enable_sort": "on"})


class CheckRows(NamedTuple):
    """What the check reads; `sums` is the balance pass's row, data-quality counts included."""

    user: UserRef
    balance: Balance
    sums: Mapping[Any, Any]
    signals: dict[str, Any]
    breakdown: list[BreakdownRow]
    operations: list[Operation]
    snapshot: LedgerSnapshot


def read_check(
    conn: Connection,
    cols: Columns,
    settings: Settings,
    tiers: Tiers,
    user_id: str,
    *,
    initial_grant: int | None,
    offset: int,
    limit: int,
    ending: bool = False,
) -> CheckRows:
    """The user's profile, balance, signals, breakdown, the operations at `offset` and the ledger position a
    fix proposed from the check must still match, in one round trip. The position is the breakdown's
    rows and latest use added up (`snapshot_of_breakdown`): no pass of its own over the user's rows.

    `ending`: the check reads nothing after these (its first page cannot be past the end), so the
    transaction's COMMIT rides in the same round trip (`fetch_all`). A user without a current profile is
    told apart as `find_user` does (the other statements then found nothing either).
    """
    defer(conn, _PLANNER)
    profile, sums, breakdown, _, signals, operations = fetch_all(
        conn,
        [
            Statement(profile_sql(cols), {"u": user_id}),
            Statement(balance_sql(cols), balance_params(tiers, user_id, initial_grant)),
            breakdown_statement(cols, user_id),
            _SORTING,
            Statement(ledger_signals_sql(cols), signals_params(settings, user_id)),
            operations_statement(cols, user_id, offset=offset, limit=limit),
        ],
        ending=ending,
    )
    ref = user_ref(conn, cols, user_id, profile[0] if profile else None)
    [row] = sums
    [signal_row] = signals
    groups = breakdown_of(breakdown)
    return CheckRows(
        user=ref,
        balance=balance_of(cols, tiers, row, initial_grant),
        sums=row,
        signals=signal_row,
        breakdown=groups,
        operations=operations_of(operations),
        snapshot=snapshot_of_breakdown(groups),
    )
