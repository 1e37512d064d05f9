"""A replica of VibrationFit's database (the product the reconciliation guide was written for), and the
configuration that makes tokens-bot right on it.

`replica_database` creates a scratch database with the DDL of `tests.support.replica_schema`, the users
of `tests.support.replica_users`, and the bot's own migrated schema. `CONFIG` is the runtime contract's
environment for this product; `settings_from_env` builds the same settings for direct core calls.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text

from core.settings import Settings
from core.store.db import make_engine
from core.store.migrate import migrate
from tests.support.databases import create_database, drop_database
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage
from tests.support.replica_ledger import PRICES
from tests.support.replica_schema import DDL, INSERT_TIER, tier_id, tier_rows
from tests.support.replica_users import ReplicaUser, replica_users
from tests.support.slack_http import SlackClient, buttons, reply_text

CONFIG = {
    "TOKENS_GRANT_ACTIONS": "admin_grant,trial_grant,token_pack_purchase",
    "TOKENS_DEDUCT_ACTIONS": "admin_deduct",
    "TOKENS_RESET_ACTIONS": "subscription_grant",
    "TOKENS_COST_UNIT": "cents",
    "TOKENS_TIER_COLUMN": "membership_tier_id",
    "TOKENS_TIER_TABLE": json.dumps(
        {
            "table": "public.membership_tiers",
            "key": "id",
            "name": "tier_type",
            "amounts": ["annual_token_grant", "monthly_token_grant"],
        }
    ),
    "TOKENS_LEDGER_MODEL": "admin",
    # The product's own price table, in the unit its ledger stores: with the bot's default table
    # (cents per 1,000 tokens of other models) every operation would look mispriced.
    "TOKENS_MODEL_PRICES": json.dumps(
        {m: {"input": str(i), "output": str(o)} for m, (i, o) in PRICES.items()}
    ),
}
ADMINS = ["UADMIN1", "UADMIN2"]


def settings_from_env(url: str, env: Mapping[str, str], **fields: Any) -> Settings:
    """Settings read from exactly `env` (as a deployment would), none of the test runner's TOKENS_*."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CONFIG:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings(_env_file=None, database_url=url, tokens_admins=ADMINS, **fields)  # type: ignore[call-arg]


def load(conn: Connection, users: list[ReplicaUser]) -> None:
    for statement in DDL:
        conn.execute(text(statement))
    conn.execute(text(INSERT_TIER), tier_rows())
    conn.execute(
        text("INSERT INTO auth.users (id, email) VALUES (CAST(:id AS uuid), :email)"),
        [{"id": u.user_id, "email": u.email} for u in users],
    )
    profiles = [
        {
            "id": p.id,
            "user_id": u.user_id,
            "created": p.created_at,
            "updated": p.updated_at,
            "used": p.state.used,
            "remaining": p.state.remaining,
            "cost": p.state.cost,
            "tier": tier_id(p.tier) if p.tier else None,
            "version": p.version,
            "draft": p.draft,
            "active": p.active,
            "parent": p.parent,
        }
        for u in users
        for p in sorted(u.profiles, key=lambda p: p.version)  # a parent before its child
    ]
    conn.execute(
        text(
            "INSERT INTO public.user_profiles (id, user_id, created_at, updated_at, vibe_assistant_tokens_used,"
            " vibe_assistant_tokens_remaining, vibe_assistant_total_cost, membership_tier_id, version_number,"
            " is_draft, is_active, parent_version_id) VALUES (CAST(:id AS uuid), CAST(:user_id AS uuid),"
            " :created, :updated, :used, :remaining, :cost, CAST(:tier AS uuid), :version, :draft, :active,"
            " CAST(:parent AS uuid))"
        ),
        profiles,
    )
    conn.execute(
        text(
            "INSERT INTO public.token_usage (id, user_id, action_type, model_used, tokens_used, input_tokens,"
            " output_tokens, cost_estimate, success, error_message, metadata, created_at) VALUES"
            " (CAST(:id AS uuid), CAST(:user_id AS uuid), :action_type, :model_used, :tokens_used,"
            " :input_tokens, :output_tokens, :cost_estimate, :success, :error_message,"
            " CAST(:metadata AS jsonb), :created_at)"
        ),
        [{**row, "metadata": json.dumps(row["metadata"])} for u in users for row in u.rows],
    )
    conn.execute(text("ANALYZE"))


@contextmanager
def replica_database(server_url: str) -> Iterator[tuple[str, list[ReplicaUser]]]:
    """A scratch database holding the replica and the bot's schema; its URL and users. Dropped after."""
    name = f"tokens_replica_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    engine = make_engine(url, pool_size=1)
    users = replica_users()
    try:
        with engine.begin() as conn:
            load(conn, users)
        migrate(engine, "tokens_bot")
        engine.dispose()
        yield url, users
    finally:
        engine.dispose()
        drop_database(server_url, name)


PAGE_ROW = re.compile(r"^\*(\d+)\.\* (?:\S+ )?([^\s]+@[^\s]+|[0-9a-f-]{36})$")


def listed(slack: SlackClient, fake_slack: FakeSlack, first: dict[str, Any], page_action: str) -> list[str]:
    """The user labels of every row of a paged list, following its Next buttons over signed clicks."""
    labels, body = [], first
    for _ in range(20):
        for block in body.get("blocks", []):
            line = (
                block.get("text", {}).get("text", "").split("\n")[0] if block.get("type") == "section" else ""
            )
            match = PAGE_ROW.match(line)
            if match:
                labels.append(match.group(2))
        following = [
            e["value"]
            for b in body.get("blocks", [])
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == page_action and "Next" in e["text"]["text"]
        ]
        if not following:
            return labels
        result, name = slack.click(page_action, following[0])
        assert result.status == 200, result.body
        [body] = fake_slack.responses(name)
    raise AssertionError(f"more than 20 pages: {reply_text(body)}")


def approve_posted(
    slack: SlackClient, fake_slack: FakeSlack, channel: str, request_reply: dict[str, Any]
) -> dict[str, Any]:
    """Approve, as the second admin, the approval message a request posted; the approver's reply."""
    assert "request #" in request_reply["text"], reply_text(request_reply)
    number = request_reply["text"].split("request #")[1].split()[0].rstrip(".:,")
    [posted] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == channel
            and "thread_ts" not in c.body
            and f"request #{number}:" in c.body["text"]
        )
    )
    result, name = slack.click(
        "approval_approve", buttons(posted.body)["approval_approve"], user="UADMIN2", channel=channel
    )
    assert result.status == 200, result.body
    [reply] = fake_slack.responses(name)
    assert "You approved" in reply["text"], reply_text(reply)
    return reply


def add_rows_of_every_kind(conn: Connection, users: list[ReplicaUser], at: datetime) -> None:
    """One row for each of the first 12 users at `at`: usage, the replica's reset, a pack, a deduction,
    some failed."""
    actions = ("chat_conversation", "subscription_grant", "token_pack_purchase", "admin_deduct")
    for i, u in enumerate(users[:12]):
        add_usage(conn, u.user_id, tokens=1_000 * (i + 1), action=actions[i % 4], at=at, success=i % 5 != 4)
