"""`/tokens reconcile`: the guide's Step 4 for one user, and the ledger position a correction must still match."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Connection

from core.domain.approvals import ReconcileReport
from core.settings import Settings
from core.store.balances import compute_balance
from core.store.columns import Columns
from core.store.ledger import ledger_snapshot
from core.store.product import ProductShape
from core.store.users import find_user


def reconcile(
    conn: Connection, shape: ProductShape, settings: Settings, user: UUID | str, initial_grant: int | None
) -> ReconcileReport:
    """`/tokens reconcile`: current against ledger-derived values, read in one snapshot."""
    cols = Columns.of(shape, settings)
    ref = find_user(conn, cols, user)
    return ReconcileReport(
        user=ref,
        balance=compute_balance(conn, shape, settings, ref.user_id, initial_grant),
        snapshot=ledger_snapshot(conn, cols, ref.user_id),
        explicit_initial_grant=initial_grant,
    )
