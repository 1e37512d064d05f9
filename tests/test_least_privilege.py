"""The shipped least-privilege role is enough for every Slack scenario, and no more than that."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from core.settings import to_sqlalchemy_url
from core.store.db import make_engine
from demo.data import create_product_tables
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import create_database, drop_database
from tests.support.fake_slack import FakeSlack
from tests.support.fleet_data import craft_fleet
from tests.support.slack_http import SlackClient, buttons, reply_text


def role_sql(role: str, password: str) -> str:
    """The shipped script with psql's `:"role"` and `:'password'` variables substituted, as psql -v does."""
    script = files("core.store").joinpath("sql/least_privilege.sql").read_text()
    return script.replace(':"role"', f'"{role}"').replace(":'password'", f"'{password}'")


@pytest.fixture(scope="module")
def restricted(server_url: str) -> Iterator[tuple[str, str, dict[str, uuid.UUID]]]:
    """A product database with crafted users, and a URL that logs in as the least-privilege role."""
    name = f"tokens_lp_{uuid.uuid4().hex[:10]}"
    role = f"tokens_bot_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    owner = make_engine(url, pool_size=1)
    with owner.begin() as conn:
        create_product_tables(conn)
        users = craft_fleet(conn)
        conn.exec_driver_sql(role_sql(role, "lp-secret"))
    owner.dispose()
    role_url = make_url(to_sqlalchemy_url(url)).set(username=role, password="lp-secret")
    plain = role_url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    yield plain, url, users
    drop_database(server_url, name)
    admin = create_engine(to_sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def test_every_slack_scenario_runs_under_the_least_privilege_role(
    restricted: tuple[str, str, dict[str, uuid.UUID]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Migrations, check, the fleet lists, an approved grant and an approved correction, the tick's alerts
    run inside serve, and the Home tab all work as the role."""
    role_url, _, _ = restricted
    # A Slack of its own: request numbers restart in this database and must not match other tests' posts.
    fake_slack = FakeSlack().start()
    fake_slack.users.update({"UADMIN2": {"name": "Bea Approver", "email": "bea@staff.example"}})
    env = bot_env(
        role_url, fake_slack.api_url, TOKENS_ALERTS_CHANNEL="CALERTS", TOKENS_TICK_INTERVAL_SECONDS="1"
    )
    process = BotProcess(env, tmp_path_factory.mktemp("lp") / "bot.log")
    slack = SlackClient(process.url, SIGNING_SECRET, fake_slack.url)

    def ask(command: str, user: str = "UADMIN1") -> dict[str, Any]:
        result, name = slack.command(command, user=user)
        assert result.status == 200, result.body
        [body] = fake_slack.responses(name)
        assert "went wrong" not in body["text"] and "unavailable" not in body["text"], body["text"]
        return body

    def click(action_id: str, value: str, user: str = "UADMIN2") -> dict[str, Any]:
        result, name = slack.click(action_id, value, user=user, channel="CAPPROVALS")
        assert result.status == 200, result.body
        [body] = fake_slack.responses(name)
        assert "went wrong" not in body["text"], body["text"]
        return body

    try:
        assert "Reconciled" in reply_text(ask("check clean@fleet.example"))
        assert "users under 10,000 tokens" in reply_text(ask("lowbalance"))
        assert "discrepancy over 100" in reply_text(ask("discrepancies"))
        assert "highest" in reply_text(ask("top 5"))

        created = ask("adjust low@fleet.example +10k goodwill after the outage")
        number = int(re.search(r"request #(\d+)", created["text"]).group(1))  # type: ignore[union-attr]
        [posted] = fake_slack.wait_for(
            lambda c: c.method == "chat.postMessage" and f"request #{number}:" in c.body.get("text", "")
        )
        approved = click("approval_approve", buttons(posted.body)["approval_approve"])
        assert "Approved" in reply_text(approved) or "approved" in reply_text(approved)

        reconcile = ask("reconcile failed@fleet.example")
        proposed = click("reconcile_propose", buttons(reconcile)["reconcile_propose"], user="UADMIN1")
        correction = int(re.search(r"#(\d+)", proposed["text"]).group(1))  # type: ignore[union-attr]
        [posted] = fake_slack.wait_for(
            lambda c: c.method == "chat.postMessage" and f"request #{correction}:" in c.body.get("text", "")
        )
        click("approval_approve", buttons(posted.body)["approval_approve"])
        assert "Reconciled" in reply_text(ask("check failed@fleet.example"))
        [alerts] = fake_slack.wait_for(lambda c: c.body.get("channel") == "CALERTS", timeout=30)
        assert "new alert" in alerts.body["text"]
        assert slack.event({"type": "app_home_opened", "user": "UADMIN1", "tab": "home"}).status == 200
        [home] = fake_slack.wait_for(lambda c: c.method == "views.publish")
        assert "The fleet" in json.dumps(home.body["view"])
        assert "went wrong" not in process.log() and "Traceback" not in process.log()
    finally:
        process.stop()
        fake_slack.stop()
    owner = make_engine(restricted[1], pool_size=1)
    with owner.connect() as conn:
        owners = set(
            conn.execute(text("SELECT tableowner FROM pg_tables WHERE schemaname = 'tokens_bot'")).scalars()
        )
    owner.dispose()
    assert owners == {make_url(to_sqlalchemy_url(role_url)).username}, (
        "the bot migrated its schema as the role"
    )


def test_the_role_cannot_change_what_it_does_not_need(
    restricted: tuple[str, str, dict[str, uuid.UUID]],
) -> None:
    """Ledger rows cannot be altered or deleted, nor profile columns beyond the three balances."""
    role_url, _, users = restricted
    engine = make_engine(role_url, pool_size=1)
    forbidden = [
        "UPDATE token_usage SET tokens_used = 0",
        "DELETE FROM token_usage",
        "UPDATE user_profiles SET membership_tier = 'annual'",
        "DELETE FROM user_profiles",
        "SELECT created_at FROM auth.users",
        "CREATE TABLE public.intruder (id int)",
    ]
    try:
        for statement in forbidden:
            with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.begin() as conn:
            changed = conn.execute(
                text(
                    "UPDATE user_profiles SET vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining"
                    " WHERE user_id = :u"
                ),
                {"u": users["clean"]},
            ).rowcount
        assert changed == 1
    finally:
        engine.dispose()
