"""Approval requests and the audit trail of every decision on them, in the bot's own schema."""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f"""
        CREATE TABLE "{schema}".approval_requests (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('adjustment', 'correction')),
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'applied', 'rejected', 'cancelled', 'expired', 'stale')),
            user_id uuid NOT NULL,
            user_email text,
            delta bigint,
            reason text NOT NULL,
            remaining_at_request bigint NOT NULL,
            correction jsonb,
            requested_by text NOT NULL,
            requested_by_name text NOT NULL,
            requested_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            decided_by text,
            decided_by_name text,
            decided_at timestamptz,
            decision_reason text,
            balance_before bigint,
            balance_after bigint,
            ledger_row_id text,
            channel text,
            message_ts text,
            CHECK ((kind = 'adjustment') = (delta IS NOT NULL AND delta <> 0)),
            CHECK ((kind = 'correction') = (correction IS NOT NULL))
        )
        """
    )
    # Listing pending requests and expiring overdue ones both start from this index.
    op.execute(
        f'CREATE INDEX approval_requests_pending_idx ON "{schema}".approval_requests (expires_at)'
        " WHERE status = 'pending'"
    )
    # At most one applied request per ledger row: the database backs the exactly-once rule too.
    op.execute(
        f'CREATE UNIQUE INDEX approval_requests_ledger_row_idx ON "{schema}".approval_requests (ledger_row_id)'
    )
    op.execute(
        f"""
        CREATE TABLE "{schema}".audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            request_id bigint NOT NULL REFERENCES "{schema}".approval_requests (id),
            event text NOT NULL,
            actor text NOT NULL,
            actor_name text NOT NULL,
            at timestamptz NOT NULL,
            details jsonb NOT NULL DEFAULT '{{}}'::jsonb
        )
        """
    )
    op.execute(f'CREATE INDEX audit_log_request_idx ON "{schema}".audit_log (request_id, id)')


def downgrade(schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".audit_log')
    op.execute(f'DROP TABLE IF EXISTS "{schema}".approval_requests')
