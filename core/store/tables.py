"""The bot's own tables as SQLAlchemy Core `Table`s; the migrations create them, these name them.

They are declared without a schema: every statement runs with `in_bot_schema(settings)`, whose
schema_translate_map puts them in TOKENS_SCHEMA, so one declaration serves any schema name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from core.settings import Settings

metadata = MetaData()

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("user_email", Text),
    Column("delta", BigInteger),
    Column("reason", Text, nullable=False),
    Column("remaining_at_request", Numeric, nullable=False),
    Column("correction", JSONB(none_as_null=True)),
    Column("requested_by", Text, nullable=False),
    Column("requested_by_name", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", Text),
    Column("decided_by_name", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("decision_reason", Text),
    Column("balance_before", Numeric),
    Column("balance_after", Numeric),
    Column("ledger_row_id", Text),
    Column("channel", Text),
    Column("message_ts", Text),
    # When approvers were last reminded in the message's thread (migration 0006); NULL: never.
    Column("reminded_at", DateTime(timezone=True)),
    # What a fix request changes, for one user or a batch (migration 0007); NULL for other requests.
    Column("fix", JSONB(none_as_null=True)),
    # Distinct approvers the request needs (TOKENS_QUORUM, migration 0010); their votes are below.
    Column("quorum", Integer, nullable=False),
)

approval_votes = Table(
    "approval_votes",
    metadata,
    Column("request_id", BigInteger, ForeignKey("approval_requests.id"), primary_key=True),
    Column("voter", Text, primary_key=True),
    Column("voter_name", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

fix_items = Table(
    "fix_items",
    metadata,
    Column("request_id", BigInteger, ForeignKey("approval_requests.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("plan", JSONB, nullable=False),
    Column("before_image", JSONB(none_as_null=True)),
    Column("ledger_row_ids", ARRAY(Text)),
    Column("outcome", Text),
    Column("verified", Boolean),
    Column("verification", Text),
    Column("applied_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("request_id", BigInteger, ForeignKey("approval_requests.id"), nullable=False),
    Column("event", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_name", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("details", JSONB, nullable=False),
)

digests = Table(
    "digests",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("channel", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("minimum", BigInteger, nullable=False),
    Column("discrepant", BigInteger, nullable=False),
    Column("low_balances", BigInteger, nullable=False),
    Column("message_ts", Text),
    # Negative balances at the digest (migration 0005); NULL on digests stored before it.
    Column("negative", BigInteger),
)

digest_discrepancies = Table(
    "digest_discrepancies",
    metadata,
    Column("digest_id", BigInteger, ForeignKey("digests.id"), primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("worst", Numeric, nullable=False),
    Column("used_discrepancy", Numeric, nullable=False),
    Column("remaining_discrepancy", Numeric, nullable=False),
    Column("deferred", Boolean, nullable=False),
)

# Alerts that fired and have not recovered yet, one per crossing (migration 0009).
alerts = Table(
    "alerts",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("threshold", BigInteger, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("value", Numeric, nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# The fleet's numbers at each scan `tokens-bot tick` made for alerts (migration 0009), for App Home.
fleet_scans = Table(
    "fleet_scans",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("scanned_at", DateTime(timezone=True), nullable=False),
    Column("users", BigInteger, nullable=False),
    Column("negative", BigInteger, nullable=False),
    Column("low_balances", BigInteger, nullable=False),
    Column("low_threshold", BigInteger, nullable=False),
    Column("discrepant", BigInteger, nullable=False),
    Column("minimum", BigInteger, nullable=False),
)


def in_bot_schema(settings: Settings) -> dict[str, Any]:
    """Execution options that put the tables above in TOKENS_SCHEMA."""
    return {"schema_translate_map": {None: settings.tokens_schema}}
