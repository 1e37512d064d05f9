"""tokens-bot on a replica of the product the reconciliation guide was written for (VibrationFit, 2025-11-11).

The replica (tests.support.replica*) is our own DDL of the production schema: versioned user_profiles,
membership_tiers, token_usage with its CHECK list and row-level security, and 30 users whose stories
the product's own code and fix scripts tell. With the product's configuration (`CONFIG`) every clean
user reconciles and each real cause of drift is found with its amount; without it, subscribers look
broken. Expected numbers come from tests.support.replica_ledger's row-by-row reading, never the bot's SQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.domain.check_report import CheckReport
from core.domain.models import Balance
from core.services.service import TokensService
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.expected_balances import Problems
from tests.support.fake_slack import FakeSlack
from tests.support.replica import CONFIG, approve_posted, listed, replica_database, settings_from_env
from tests.support.replica_users import ReplicaUser
from tests.support.reports import all_rows
from tests.support.slack_http import SlackClient, ask, buttons, reply_text

ACTOR = "UADMIN1"
FAILURE = "Something went wrong"
TITLES = {
    "reconciled": ":white_check_mark: Reconciled",
    "minor": ":large_yellow_circle: Minor drift",
    "problem": ":red_circle: Problem",
}


@dataclass
class Replica:
    url: str
    users: list[ReplicaUser]
    engine: Engine
    service: TokensService
    slack: SlackClient
    channel: str

    def user(self, key: str) -> ReplicaUser:
        [found] = [u for u in self.users if u.key == key]
        return found

    @property
    def clean(self) -> list[ReplicaUser]:
        return [u for u in self.users if u.finding is None]

    @property
    def planted(self) -> list[ReplicaUser]:
        return [u for u in self.users if u.finding is not None]

    def profile_rows(self, user: ReplicaUser) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM user_profiles WHERE user_id = :u"), {"u": user.user_id})
            return {str(r["id"]): dict(r) for r in rows.mappings()}

    def ledger_count(self, user: ReplicaUser) -> int:
        with self.engine.connect() as conn:
            sql = text("SELECT count(*) FROM token_usage WHERE user_id = :u")
            return int(conn.execute(sql, {"u": user.user_id}).scalar_one())


@contextmanager
def deployed(server_url: str, fake_slack: FakeSlack, log_dir: Path) -> Iterator[Replica]:
    """A fresh replica and a `tokens-bot serve` of its own, configured for the product."""
    channel = f"CREPL{uuid.uuid4().hex[:8].upper()}"
    with replica_database(server_url) as (url, users):
        engine = make_engine(url, pool_size=2)
        env = bot_env(
            url, fake_slack.api_url, **CONFIG, TOKENS_APPROVALS_CHANNEL=channel, WEB_CONCURRENCY="1"
        )
        process = BotProcess(env, log_dir / "bot.log")
        try:
            service = TokensService(settings_from_env(url, CONFIG), engine)
            yield Replica(
                url, users, engine, service, SlackClient(process.url, SIGNING_SECRET, fake_slack.url), channel
            )
        finally:
            process.stop()
            log = process.log_path.read_text(errors="replace")
            engine.dispose()
            assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def replica(
    server_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    """Read by every test but the approvals: nothing here changes it."""
    with deployed(server_url, fake_slack, tmp_path_factory.mktemp("replica")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def writable(
    server_url: str, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    """A second replica for the approvals, so their writes never move another test's numbers."""
    with deployed(server_url, fake_slack, tmp_path_factory.mktemp("replica-writes")) as deployment:
        yield deployment


def numbers(b: Balance) -> tuple[object, ...]:
    return (
        b.current_remaining,
        b.current_used,
        b.current_cost,
        b.expected_remaining,
        b.calculated_used,
        b.calculated_cost,
    )


def wanted(u: ReplicaUser) -> tuple[object, ...]:
    return (
        u.profile.remaining,
        u.profile.used,
        u.profile.cost,
        u.ledger.remaining,
        u.ledger.used,
        u.ledger.cost,
    )


def assert_report(report: CheckReport, u: ReplicaUser) -> None:
    """The current profile row against the ledger, the verdict, and exactly the planted cause's finding."""
    assert report.user.user_id == u.user_id
    assert numbers(report.balance) == wanted(u), (numbers(report.balance), wanted(u))
    b = report.balance
    assert (b.used_discrepancy, b.remaining_discrepancy, b.cost_discrepancy) == (
        u.used_discrepancy,
        u.remaining_discrepancy,
        u.cost_discrepancy,
    )
    assert str(report.verdict) == u.verdict, [f.summary for f in report.findings]
    assert {(str(f.kind), f.tokens) for f in report.findings} == ({u.finding} if u.finding else set()), [
        f.summary for f in report.findings
    ]


def test_every_clean_user_reconciles_by_uuid_and_by_email(replica: Replica) -> None:
    """26 users (subscribers with annual resets, 28-day tiers, trials, packs, versioned profiles): reconciled."""
    problems = Problems()
    for u in replica.clean:
        for name in (u.user_id, u.email, u.email.upper()):
            with problems.section(f"{u.key} as {name}"):
                assert_report(replica.service.check(ACTOR, name), u)
    problems.assert_none()


def test_every_planted_cause_is_found_with_its_amount(replica: Replica) -> None:
    """Usage never subtracted, the untracked default 100, grants before tracking, a backfill run twice."""
    problems = Problems()
    assert {u.key: u.finding for u in replica.planted} == {
        "ops_owner": ("usage_not_charged", 432_778),
        "default_hundred": ("unlogged_grant", 100),
        "before_tracking": ("unlogged_grant", 100_000),
        "backfill_twice": ("duplicate_grant", 283_615),
    }
    for u in replica.planted:
        for name in (u.user_id, u.email):
            with problems.section(f"{u.key} as {name}"):
                assert_report(replica.service.check(ACTOR, name), u)
    problems.assert_none()


def test_every_check_over_signed_http_shows_the_current_rows_numbers(
    replica: Replica, fake_slack: FakeSlack
) -> None:
    """`/tokens check <uuid>` and `<email>`: the verdict, used and remaining against the ledger, the finding."""
    problems = Problems()
    for u in replica.users:
        for name in (u.user_id, u.email):
            with problems.section(f"check {u.key} as {name}"):
                shown = reply_text(ask(replica.slack, fake_slack, f"check {name}"))
                facts = [
                    f"{TITLES[u.verdict]}: ",
                    f"profile {u.profile.used:,} · ledger {u.ledger.used:,}",
                    f"profile {u.profile.remaining:,} · expected {u.ledger.remaining:,}",
                    f"discrepancy *{u.used_discrepancy:+,}*" if u.used_discrepancy else "discrepancy *0*",
                    f"discrepancy *{u.remaining_discrepancy:+,}*"
                    if u.remaining_discrepancy
                    else "discrepancy *0*",
                ]
                if u.finding:
                    facts.append(f"— {u.finding[1]:,} tokens.")
                else:
                    facts.append("Nothing suspicious in the ledger.")
                assert FAILURE not in shown, shown
                missing = [fact for fact in facts if fact not in shown]
                assert not missing, (missing, shown)
    problems.assert_none()


def test_fleet_lists_read_the_current_row_and_count_each_user_once(replica: Replica) -> None:
    """discrepancies 0: exactly the planted users; lowbalance and top: every user once, current values."""
    r, problems = replica, Problems()
    with problems.section("discrepancies 0"):
        scanned = all_rows(lambda p: r.service.discrepancies(ACTOR, 0, page=p))
        ids = [row.user.user_id for row in scanned]
        assert sorted(ids) == sorted(u.user_id for u in r.planted), [r_.user.label for r_ in scanned]
        for row in scanned:
            [u] = [u for u in r.planted if u.user_id == row.user.user_id]
            assert numbers(row.balance) == wanted(u), u.key
            assert u.finding in {(str(f.kind), f.tokens) for f in row.findings}, (u.key, row.findings)

    with problems.section("lowbalance 10,000"):
        low = all_rows(lambda p: r.service.lowbalance(ACTOR, 10_000, page=p))
        want = sorted((u.profile.remaining, u.user_id) for u in r.users if u.profile.remaining < 10_000)
        assert [row.remaining for row in low] == [remaining for remaining, _ in want]
        assert sorted((row.remaining, row.user.user_id) for row in low) == want
        assert {u.key for u in r.users if u.profile.remaining < 10_000} == {
            "monthly_low_versions", "trial_low", "spent_out", "fresh_free", "fresh_none",
        }  # fmt: skip

    with problems.section("top 100"):
        top = all_rows(lambda p: r.service.top(ACTOR, 100, page=p))
        report = r.service.top(ACTOR, 100)
        assert report.users == len(r.users)
        assert sorted((row.used, row.user.user_id) for row in top) == sorted(
            (u.profile.used, u.user_id) for u in r.users
        )
        assert [row.used for row in top] == sorted((u.profile.used for u in r.users), reverse=True)
        remaining = {row.user.user_id: row.remaining for row in top}
        assert remaining == {u.user_id: u.profile.remaining for u in r.users}

    with problems.section("digest totals"):
        totals = r.service.digest("CDIGEST", lambda report: None, remember=False).totals
        assert (totals.users, totals.remaining, totals.used, totals.cost) == (
            len(r.users),
            sum(u.profile.remaining for u in r.users),
            sum(u.profile.used for u in r.users),
            sum(u.profile.cost for u in r.users),
        )
    problems.assert_none()


def test_fleet_lists_over_signed_http_name_each_user_once(replica: Replica, fake_slack: FakeSlack) -> None:
    r, problems = replica, Problems()
    planted = sorted(r.planted, key=lambda u: -max(abs(u.used_discrepancy), abs(u.remaining_discrepancy)))
    low = sorted((u for u in r.users if u.profile.remaining < 10_000), key=lambda u: u.profile.remaining)
    cases = [
        (
            "discrepancies 0",
            "discrepancies_page",
            f"Discrepancies: {len(planted)} users over 0 tokens",
            planted,
        ),
        ("lowbalance", "lowbalance_page", f"Low balances: {len(low)} users under 10,000 tokens", low),
        ("top 100", "top_page", "Top 30 users by lifetime usage", r.users),
    ]
    for command, page_action, headline, users in cases:
        with problems.section(command):
            first = ask(r.slack, fake_slack, command)
            assert first["text"] == headline, reply_text(first)
            labels = listed(r.slack, fake_slack, first, page_action)
            assert sorted(labels) == sorted(u.email for u in users), labels
            if command == "discrepancies 0":
                assert labels == [u.email for u in planted]  # largest first
            if command == "lowbalance":  # lowest first (three users tie at 0)
                remaining = {u.email: u.profile.remaining for u in low}
                assert [remaining[label] for label in labels] == [u.profile.remaining for u in low]
    problems.assert_none()


def bot_ledger_rows(r: Replica, u: ReplicaUser, reason: str) -> list[tuple[object, ...]]:
    with r.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action_type, model_used, tokens_used, cost_estimate, success FROM token_usage"
                " WHERE user_id = :u AND metadata->>'reason' = :reason"
            ),
            {"u": u.user_id, "reason": reason},
        )
        return [tuple(row) for row in rows]


@pytest.mark.parametrize(
    ("key", "delta"),
    [("annual_pack_versions", 25_000), ("annual_pack_versions", -10_000), ("versions_no_active", 5_000)],
)
def test_an_approved_adjustment_writes_one_ledger_row_and_only_the_current_profile_row(
    writable: Replica, fake_slack: FakeSlack, key: str, delta: int
) -> None:
    """admin_grant / admin_deduct with model 'admin' (the CHECK allows it); inactive and draft rows untouched."""
    r, u = writable, writable.user(key)
    reason = f"replica {'grant' if delta > 0 else 'deduction'} {uuid.uuid4().hex[:6]}"
    before, count = r.profile_rows(u), r.ledger_count(u)
    expected_before = r.service.check(ACTOR, u.user_id).balance.expected_remaining

    approve_posted(
        r.slack, fake_slack, r.channel, ask(r.slack, fake_slack, f"adjust {u.email} {delta:+} {reason}")
    )

    action = "admin_grant" if delta > 0 else "admin_deduct"
    assert bot_ledger_rows(r, u, reason) == [(action, "admin", abs(delta), 0, True)]
    assert r.ledger_count(u) == count + 1
    after = r.profile_rows(u)
    current = u.current.id
    assert (
        after[current]["vibe_assistant_tokens_remaining"]
        == before[current]["vibe_assistant_tokens_remaining"] + delta
    )
    unchanged = (
        "vibe_assistant_tokens_used",
        "vibe_assistant_total_cost",
        "is_active",
        "is_draft",
        "version_number",
    )
    assert {c: after[current][c] for c in unchanged} == {c: before[current][c] for c in unchanged}
    for profile_id, row in before.items():
        if profile_id != current:
            assert after[profile_id] == row, f"the {'draft' if row['is_draft'] else 'inactive'} row changed"

    report = r.service.check(ACTOR, u.user_id)
    assert str(report.verdict) == "reconciled", [f.summary for f in report.findings]
    assert report.balance.current_remaining == after[current]["vibe_assistant_tokens_remaining"]
    assert report.balance.expected_remaining == expected_before + delta


def test_an_approved_correction_sets_exactly_the_current_row(
    writable: Replica, fake_slack: FakeSlack
) -> None:
    """reconcile → Propose correction → Approve (second admin): the current row gets the ledger's values."""
    r, u = writable, writable.user("ops_owner")
    before, count = r.profile_rows(u), r.ledger_count(u)
    report = ask(r.slack, fake_slack, f"reconcile {u.email}")
    assert f"{u.ledger.remaining:,}" in reply_text(report), reply_text(report)
    assert "reconcile_propose" in buttons(report), reply_text(report)
    clicked, name = r.slack.click("reconcile_propose", buttons(report)["reconcile_propose"])
    assert clicked.status == 200, clicked.body
    [proposed] = fake_slack.responses(name)
    approve_posted(r.slack, fake_slack, r.channel, proposed)

    after = r.profile_rows(u)
    row = after[u.current.id]
    assert (
        row["vibe_assistant_tokens_remaining"],
        row["vibe_assistant_tokens_used"],
        row["vibe_assistant_total_cost"],
    ) == (
        u.ledger.remaining,
        u.ledger.used,
        u.ledger.cost,
    )
    for profile_id, old in before.items():
        if profile_id != u.current.id:
            assert after[profile_id] == old, f"the {'draft' if old['is_draft'] else 'inactive'} row changed"
    assert r.ledger_count(u) == count, "a correction writes no ledger row"
    check = r.service.check(ACTOR, u.user_id)
    assert (str(check.verdict), check.findings) == ("reconciled", [])


def test_doctor_explains_the_products_configuration(replica: Replica) -> None:
    """`tokens-bot doctor` with the product's environment: action types, profile versioning, cost unit."""
    env = {**os.environ, **CONFIG, "DATABASE_URL": replica.url}
    done = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode in (0, 1) and "Traceback" not in out, out
    lines = done.stdout.lower().splitlines()
    for action in ("subscription_grant", "trial_grant", "token_pack_purchase", "admin_deduct"):
        assert action in done.stdout, (action, out)
    assert any("draft" in line for line in lines), out
    assert any("cent" in line and ("cost" in line or "unit" in line) for line in lines), out


def test_without_the_configuration_subscribers_look_broken(replica: Replica) -> None:
    """Defaults (the guide's rules): the annual grant and the trial read as usage, cents as dollars."""
    service = TokensService(settings_from_env(replica.url, {}), replica.engine)
    u = replica.user("annual_trial_then_sub")
    report = service.check(ACTOR, u.user_id)
    assert str(report.verdict) == "problem"
    assert report.balance.current_used == u.profile.used
    assert report.balance.used_discrepancy == -(5_000_000 + 100_000)
    assert report.balance.cost_discrepancy != 0
    scanned = {row.user.user_id for row in all_rows(lambda p: service.discrepancies(ACTOR, 0, page=p))}
    subscribers = {
        u.user_id for u in replica.users if any(r["action_type"] == "subscription_grant" for r in u.rows)
    }
    assert len(subscribers) == 7
    assert subscribers <= scanned
