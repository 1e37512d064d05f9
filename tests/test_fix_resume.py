"""A batch fix survives its bot: `tokens-bot serve` is killed with SIGKILL while applying an approved batch,
and the next `tokens-bot tick` completes it, each item exactly once, its message ending with the summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.entrypoints import jobs
from core.settings import Settings
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.databases import SCHEMA, scratch_database
from tests.support.fake_slack import FakeSlack
from tests.support.fix_data import seed_cause
from tests.support.slack_http import SlackClient, buttons, press, reply_text

USERS = 1_000


@pytest.fixture
def resume_url(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, "tokens_fix_resume") as url:
        yield url


def applied(engine: Engine, request_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {SCHEMA}.fix_items WHERE request_id = :r AND state = 'applied'"),
                {"r": request_id},
            ).scalar_one()
        )


def reversals_per_user(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT user_id::text, count(*) FROM token_usage WHERE metadata ? 'reverses' GROUP BY 1")
            ).all()
        )


def as_if_minutes_ago(engine: Engine, request_id: int) -> None:
    """The scheduler resumes a fix that made no progress for a minute; the test does not wait for it."""
    with engine.begin() as conn:
        for table, column, key in (
            ("fix_items", "applied_at", "request_id"),
            ("approval_requests", "decided_at", "id"),
        ):
            conn.execute(
                text(
                    f"UPDATE {SCHEMA}.{table} SET {column} = {column} - interval '5 minutes' WHERE {key} = :r"
                ),
                {"r": request_id},
            )


def test_a_bot_killed_mid_batch_is_completed_by_the_next_tick_each_item_once(
    resume_url: str,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = make_engine(resume_url)
    with engine.begin() as conn:
        users = seed_cause(conn, "duplicates", "resume", USERS)
    env = bot_env(resume_url, fake_slack.api_url)
    bot = BotProcess(env, tmp_path_factory.mktemp("resume") / "bot.log", new_session=True)
    try:
        slack = SlackClient(bot.url, SIGNING_SECRET, fake_slack.url)
        result, name = slack.command("discrepancies 0 duplicates", user="UADMIN1")
        assert result.status == 200
        listed = fake_slack.responses(name, timeout=60)[-1]
        value = next(
            b["accessory"]["value"]
            for b in listed["blocks"]
            if b.get("accessory", {}).get("action_id") == "fix_propose_batch"
        )
        start = len(fake_slack.calls)
        created = press(slack, fake_slack, "fix_propose_batch", value, user="UADMIN1", channel="CADMINS")
        number = int(created["text"].split("request #")[1].split(" ")[0].rstrip(":"))
        # Request numbers restart in every test's database: only this test's message counts.
        [posted] = fake_slack.wait_for(
            lambda c: (
                fake_slack.calls.index(c) >= start
                and c.method == "chat.postMessage"
                and f"request #{number}:" in str(c.body.get("text"))
            )
        )
        slack.click("approval_approve", buttons(posted.body)["approval_approve"], user="UADMIN2")
        deadline = time.monotonic() + 120
        while applied(engine, number) < 150:
            assert time.monotonic() < deadline, bot.log()
            time.sleep(0.05)
    finally:
        bot.kill()
    done_by_bot = applied(engine, number)
    assert 150 <= done_by_bot < USERS, "the bot finished before it was killed: make the batch larger"
    assert set(reversals_per_user(engine).values()) == {1} and len(reversals_per_user(engine)) == done_by_bot

    as_if_minutes_ago(engine, number)
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.isupper()})  # type: ignore[call-arg]
    assert jobs.tick(settings) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        summary
        == f"tick: 0 expired, 0 reminded, 1 interrupted fixes resumed ({USERS:,} items applied in all)"
    )

    assert reversals_per_user(engine) == dict.fromkeys(users, 1)
    with engine.connect() as conn:
        status, audited = conn.execute(
            text(
                f"SELECT r.status, (SELECT count(*) FROM {SCHEMA}.audit_log a WHERE a.request_id = r.id"
                f" AND a.event = 'fix_applied') FROM {SCHEMA}.approval_requests r WHERE r.id = :r"
            ),
            {"r": number},
        ).one()
    assert (status, audited) == ("applied", USERS)
    final: list[Any] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.update"
            and c.body.get("ts") == posted.response["ts"]
            and f"{USERS:,} now reconciled" in reply_text(c.body)
        )
    )
    assert final
    engine.dispose()
