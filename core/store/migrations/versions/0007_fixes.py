"""Fixes (README "Fixing what the bot finds"): a request may carry a fix, for one user or a batch.

`approval_requests.fix` holds what the approvers see (cause, fix, count, totals, largest items).
`fix_items` holds each user's planned writes and their state: an item is applied in its own
transaction, which also marks it, so a batch interrupted anywhere resumes without applying an item
twice. The before-image of the profile row and the ids of the ledger rows written stay with it.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    requests = f'"{schema}".approval_requests'
    op.execute(f"ALTER TABLE {requests} ADD COLUMN fix jsonb")
    op.execute(f"ALTER TABLE {requests} DROP CONSTRAINT approval_requests_kind_check")
    op.execute(
        f"ALTER TABLE {requests} ADD CONSTRAINT approval_requests_kind_check"
        " CHECK (kind IN ('adjustment', 'correction', 'fix'))"
    )
    op.execute(
        f"ALTER TABLE {requests} ADD CONSTRAINT approval_requests_fix_check CHECK ((kind = 'fix') = (fix IS NOT NULL))"
    )
    op.execute(f"ALTER TABLE {requests} DROP CONSTRAINT approval_requests_status_check")
    op.execute(
        f"ALTER TABLE {requests} ADD CONSTRAINT approval_requests_status_check CHECK (status IN"
        " ('pending', 'applying', 'applied', 'rejected', 'cancelled', 'expired', 'stale'))"
    )
    op.execute(
        f"""
        CREATE TABLE "{schema}".fix_items (
            request_id bigint NOT NULL REFERENCES "{schema}".approval_requests (id),
            position integer NOT NULL,
            user_id text NOT NULL,
            state text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'applied', 'stale', 'failed')),
            plan jsonb NOT NULL,
            before_image jsonb,
            ledger_row_ids text[],
            outcome text,
            verified boolean,
            verification text,
            applied_at timestamptz,
            PRIMARY KEY (request_id, position),
            UNIQUE (request_id, user_id)
        )
        """
    )
    op.execute(
        f"CREATE INDEX fix_items_pending ON \"{schema}\".fix_items (request_id, position) WHERE state = 'pending'"
    )
    op.execute(f'CREATE INDEX fix_items_user ON "{schema}".fix_items (user_id)')


def downgrade(schema: str) -> None:
    requests = f'"{schema}".approval_requests'
    op.execute(f'DROP TABLE IF EXISTS "{schema}".fix_items')
    op.execute(
        f"DELETE FROM \"{schema}\".audit_log WHERE request_id IN (SELECT id FROM {requests} WHERE kind = 'fix')"
    )
    op.execute(f"DELETE FROM {requests} WHERE kind = 'fix'")
    op.execute(f"ALTER TABLE {requests} DROP COLUMN IF EXISTS fix")
    op.execute(f"ALTER TABLE {requests} DROP CONSTRAINT approval_requests_kind_check")
    op.execute(
        f"ALTER TABLE {requests} ADD CONSTRAINT approval_requests_kind_check CHECK (kind IN ('adjustment', 'correction'))"
    )
    op.execute(f"ALTER TABLE {requests} DROP CONSTRAINT approval_requests_status_check")
    op.execute(
        f"ALTER TABLE {requests} ADD CONSTRAINT approval_requests_status_check CHECK (status IN"
        " ('pending', 'applied', 'rejected', 'cancelled', 'expired', 'stale'))"
    )
