"""Quorum (TOKENS_QUORUM): a request needs `quorum` distinct approvers, each vote kept with who and when.

Requests from before this revision need one approval, as they did when they were asked.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f'ALTER TABLE "{schema}".approval_requests ADD COLUMN quorum integer NOT NULL DEFAULT 1 CHECK (quorum >= 1)'
    )
    op.execute(
        f"""
        CREATE TABLE "{schema}".approval_votes (
            request_id bigint NOT NULL REFERENCES "{schema}".approval_requests (id),
            voter text NOT NULL,
            voter_name text NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (request_id, voter)
        )
        """
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".approval_votes')
    op.execute(f'ALTER TABLE "{schema}".approval_requests DROP COLUMN IF EXISTS quorum')
