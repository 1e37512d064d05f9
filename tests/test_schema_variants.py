"""The bot on product databases of many shapes: every number equals an independent computation.

Each variant (tests.support.product_variants) is a database made with plain DDL of our own, holding the
same logical dataset (tests.support.variant_data); a `tokens-bot serve` of its own answers signed
commands. The expectations come from tests.support.expected_balances, never from the bot's SQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.domain.errors import UserNotFoundError
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env
from tests.support.expected_balances import Expected, Problems, assert_balance_matches, expected_balances
from tests.support.fake_slack import FakeSlack
from tests.support.product_variants import VARIANTS, Variant, variant_database
from tests.support.reports import all_rows
from tests.support.slack_http import SlackClient, ask, buttons, reply_text
from tests.support.variant_data import email, load_dataset, named_users, ordinary_users, user_id

ACTOR = "UADMIN1"
FAILURE = "Something went wrong"


@dataclass
class Deployment:
    variant: Variant
    url: str
    engine: Engine
    service: TokensService
    slack: SlackClient
    channel: str

    def expected(self) -> dict[str, Expected]:
        with self.engine.connect() as conn:
            return expected_balances(conn, self.variant)

    def uid(self, key: str) -> str:
        return "legacy-7" if key == "legacy" else user_id(key)

    def label(self, uid: str) -> str:
        """The dataset's name for a user id, so a failure names the case it broke."""
        keys = [u["key"] for u in named_users(self.variant)[0] + ordinary_users()[0]]
        return next((k for k in keys if self.uid(k) == uid), uid)


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.name)
def deployment(
    request: pytest.FixtureRequest,
    server_url: str,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    variant: Variant = request.param
    channel = f"CAPPR{uuid.uuid4().hex[:8].upper()}"
    with variant_database(server_url, variant, load_dataset) as url:
        engine = make_engine(url, pool_size=2)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            tokens_admins=["UADMIN1", "UADMIN2"],
            tokens_page_size=7,
        )
        env = bot_env(url, fake_slack.api_url, TOKENS_APPROVALS_CHANNEL=channel, WEB_CONCURRENCY="1")
        process = BotProcess(env, tmp_path_factory.mktemp(f"bot-{variant.name}") / "bot.log")
        try:
            yield Deployment(
                variant,
                url,
                engine,
                TokensService(settings, engine),
                SlackClient(process.url, SIGNING_SECRET, fake_slack.url),
                channel,
            )
        finally:
            process.stop()
            log = process.log_path.read_text(errors="replace")
            assert "Traceback" not in log, log
            engine.dispose()


def test_check_scan_lists_and_digest_equal_the_independent_numbers(deployment: Deployment) -> None:
    """For every user: the check by id and by email, the scan, lowbalance, top and the digest agree."""
    d, expected, problems = deployment, deployment.expected(), Problems()
    for uid, want in expected.items():
        with problems.section(f"check {d.label(uid)}"):
            assert_balance_matches(d.service.check(ACTOR, uid).balance, want, uid)
            if want.email is not None:
                assert d.service.check(ACTOR, want.email.upper()).user.user_id == uid
    with (
        problems.section("orphan"),
        pytest.raises(UserNotFoundError, match="ledger rows but no user_profiles"),
    ):
        d.service.check(ACTOR, email("orphan"))

    with problems.section("discrepancy scan"):
        scanned = {r.user.user_id: r for r in all_rows(lambda p: d.service.discrepancies(ACTOR, 0, page=p))}
        assert set(scanned) == {u for u, e in expected.items() if e.listed(0)}
        for uid, row in scanned.items():
            assert_balance_matches(row.balance, expected[uid], f"scan {uid}")

    want_low = sorted((e.current_remaining, u) for u, e in expected.items() if e.current_remaining < 10_000)
    with problems.section("lowbalance"):
        low = all_rows(lambda p: d.service.lowbalance(ACTOR, 10_000, page=p))
        assert sorted((r.remaining, r.user.user_id) for r in low) == want_low
        assert [r.remaining for r in low] == [r for r, _ in want_low]
        assert {r.user.user_id for r in low if r.remaining_unset} == {
            u for u, e in expected.items() if "remaining" in e.unset and e.current_remaining < 10_000
        }

    with problems.section("top"):
        top = all_rows(lambda p: d.service.top(ACTOR, 100, page=p))
        assert sorted((r.used, r.user.user_id) for r in top) == sorted(
            (e.current_used, u) for u, e in expected.items()
        )
        assert [r.used for r in top] == sorted((e.current_used for e in expected.values()), reverse=True)

    with problems.section("digest"):
        report = d.service.digest("CDIGEST", lambda r: None, remember=False)
        totals = report.totals
        assert (totals.users, totals.remaining, totals.used, totals.cost, totals.negative) == (
            len(expected),
            sum(e.current_remaining for e in expected.values()),
            sum(e.current_used for e in expected.values()),
            sum(e.current_cost for e in expected.values()),
            sum(1 for e in expected.values() if e.current_remaining < 0),
        )
        assert report.discrepant == sum(1 for e in expected.values() if e.listed(100))
        assert report.low.total == len(want_low)
        for row in report.new_rows:
            assert_balance_matches(row.balance, expected[row.user.user_id], f"digest {row.user.user_id}")
    problems.assert_none()


SHOWN = ["clean", "failed_charged", "duplicates", "null_cost_grants", "null_tokens", "null_success"]
SHOWN += ["null_created", "future", "near_miss", "odd_metadata", "null_profile", "negative", "no_ledger"]
SHOWN += ["infinite_time", "tier_near_miss", "ancient"]


def test_every_read_command_over_signed_http(deployment: Deployment, fake_slack: FakeSlack) -> None:
    """check (by id and by email), reconcile, lowbalance, discrepancies, top, requests: right numbers, no failure."""
    d, expected, problems = deployment, deployment.expected(), Problems()
    keys = [*SHOWN, "case_email"] + (["legacy"] if d.variant.text_user_ids else [])
    for key in keys:
        want = expected[d.uid(key)]
        names = [want.email or email(key)] + ([] if key == "legacy" else [d.uid(key)])
        for name in names:
            with problems.section(f"check {key} as {name}"):
                shown = reply_text(ask(d.slack, fake_slack, f"check {name.lower()}"))
                assert FAILURE not in shown, shown
                used, remaining = (
                    f"not set (read as {value:,})" if column in want.unset else f"{value:,}"
                    for column, value in (("used", want.current_used), ("remaining", want.current_remaining))
                )
                for fact in (
                    f"profile {used} · ledger {want.calculated_used:,}",
                    f"profile {remaining} · expected {want.expected_remaining:,}",
                    f"discrepancy *{want.used_discrepancy:+,}*"
                    if want.used_discrepancy
                    else "discrepancy *0*",
                ):
                    assert fact in shown, (fact, shown)
        with problems.section(f"reconcile {key}"):
            reconciled = reply_text(ask(d.slack, fake_slack, f"reconcile {want.email or email(key)}"))
            assert FAILURE not in reconciled and f"{want.expected_remaining:,}" in reconciled, reconciled
    with problems.section("check orphan"):
        orphan = reply_text(ask(d.slack, fake_slack, f"check {email('orphan')}"))
        assert "no user_profiles row" in orphan, orphan

    low_count = sum(1 for e in expected.values() if e.current_remaining < 10_000)
    listed = sum(1 for e in expected.values() if e.listed(100))
    replies = {
        "lowbalance": f"Low balances: {low_count:,} users under 10,000 tokens",
        "discrepancies": f"Discrepancies: {listed:,} users over 100 tokens",
        "top 100": f"highest of *{len(expected):,}* users",
        "requests": "",
        "help": "",
    }
    for command, fact in replies.items():
        with problems.section(command):
            body = ask(d.slack, fake_slack, command)
            shown = reply_text(body)
            assert FAILURE not in shown and fact in shown, shown
            # Every page of every list answers too, and each row's Check opens.
            for action, value in paging_and_checks(body):
                result, name = d.slack.click(action, value)
                assert result.status == 200
                [page] = fake_slack.responses(name)
                assert FAILURE not in reply_text(page), (action, reply_text(page))
    problems.assert_none()


# Buttons that open a form instead of answering in the channel (tests/test_modals.py covers them).
FORM_BUTTONS = {"approval_reject", "adjust_open"}


def paging_and_checks(body: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for block in body.get("blocks", []):
        elements = [block.get("accessory", {}), *block.get("elements", [])]
        found += [
            (e["action_id"], e.get("value", ""))
            for e in elements
            if e.get("type") == "button" and e["action_id"] not in FORM_BUTTONS
        ]
    return found


def approve_posted(d: Deployment, fake_slack: FakeSlack, request_reply: dict[str, Any]) -> dict[str, Any]:
    """The approval message the request posted, approved by the second admin; the approver's reply."""
    assert FAILURE not in reply_text(request_reply), reply_text(request_reply)
    number = request_reply["text"].split("request #")[1].split()[0].rstrip(".:,")
    [posted] = fake_slack.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.body.get("channel") == d.channel
            and "thread_ts" not in c.body
            and f"request #{number}:" in c.body["text"]
        )
    )
    value = buttons(posted.body)["approval_approve"]
    result, name = d.slack.click("approval_approve", value, user="UADMIN2", channel=d.channel)
    assert result.status == 200
    [reply] = fake_slack.responses(name)
    assert "You approved" in reply["text"], reply_text(reply)
    return reply


def test_adjustments_approved_by_a_second_admin_write_the_ledger_row_and_balance(
    deployment: Deployment, fake_slack: FakeSlack
) -> None:
    """A grant to a profile whose balance is NULL starts from 0; a deduction from an int balance; both logged."""
    d = deployment
    before = d.expected()
    changes = [("null_profile", 5_000), ("clean", -1_000)] + (
        [("legacy", 700)] if d.variant.text_user_ids else []
    )
    for key, delta in changes:
        uid = d.uid(key)
        approve_posted(d, fake_slack, ask(d.slack, fake_slack, f"adjust {email(key)} {delta:+} variant test"))
        with d.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT action_type, tokens_used::numeric AS tokens, success, metadata::text AS md"
                    " FROM token_usage WHERE user_id::text = :u AND metadata::text LIKE '%request_id%'"
                    " AND metadata::text LIKE '%variant test%'"
                ),
                {"u": uid},
            ).all()
            after = expected_balances(conn, d.variant)[uid]
        assert [(r.action_type, int(r.tokens), r.success) for r in rows] == [
            ("admin_grant" if delta > 0 else "admin_deduct", abs(delta), True)
        ]
        assert '"source": "slack"' in rows[0].md or '"source":"slack"' in rows[0].md
        assert after.current_remaining == before[uid].current_remaining + delta
        # An adjustment moves ledger and balance together: the discrepancy stays where it was.
        assert after.remaining_discrepancy == before[uid].remaining_discrepancy
        assert_balance_matches(d.service.check(ACTOR, uid).balance, after, f"after adjust {key}")


def test_corrections_set_the_profile_to_the_independent_expected_values(
    deployment: Deployment, fake_slack: FakeSlack
) -> None:
    """reconcile → Propose correction → approve: remaining, used and cost become the ledger's values."""
    d = deployment
    for key in ("failed_charged", "unset_profile", "no_ledger"):
        uid = d.uid(key)
        want = d.expected()[uid]
        report = ask(d.slack, fake_slack, f"reconcile {email(key)}")
        assert "reconcile_propose" in buttons(report), (key, reply_text(report))
        clicked, name = d.slack.click("reconcile_propose", buttons(report)["reconcile_propose"])
        assert clicked.status == 200
        [proposed] = fake_slack.responses(name)
        approve_posted(d, fake_slack, proposed)
        with d.engine.connect() as conn:
            profile = conn.execute(
                text(
                    "SELECT vibe_assistant_tokens_remaining::numeric AS r, vibe_assistant_tokens_used::numeric AS u,"
                    " vibe_assistant_total_cost::numeric AS c FROM user_profiles WHERE user_id::text = :u"
                ),
                {"u": uid},
            ).one()
            now = expected_balances(conn, d.variant)[uid]
        assert (profile.r, profile.u, profile.c) == (
            want.expected_remaining,
            want.calculated_used,
            want.calculated_cost,
        ), key
        assert (now.used_discrepancy, now.remaining_discrepancy, now.cost_discrepancy) == (0, 0, 0), key
        check = d.service.check(ACTOR, uid)
        assert_balance_matches(check.balance, now, f"after correction {key}")


def test_doctor_and_digest_commands_explain_the_schema_without_a_traceback(deployment: Deployment) -> None:
    """`tokens-bot doctor` exits 0 or 1 with its schema notes; `digest --dry-run` prints the digest."""
    env = {**os.environ, "DATABASE_URL": deployment.url}
    outputs = {}
    for argv, codes in ((["doctor"], (0, 1)), (["digest", "--channel", "CDIGEST", "--dry-run"], (0,))):
        done = subprocess.run(
            [sys.executable, "-m", "bot.entrypoints.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = done.stdout + done.stderr
        assert done.returncode in codes and "Traceback" not in out and FAILURE not in out, out
        outputs[argv[0]] = done.stdout
    doctor = outputs["doctor"]
    assert "product schema, where it differs from the guide's" in doctor, doctor
    if deployment.variant.profiles_view:
        assert "user_profiles: a view" in doctor, doctor
    if deployment.variant.metadata_type == "text":
        assert "token_usage.metadata" in doctor, doctor
    assert "digest printed" in outputs["digest"], outputs["digest"]


def test_alerts_and_the_home_tabs_numbers_equal_the_independent_numbers(deployment: Deployment) -> None:
    """The tick's alerts name exactly the users under 10,000 (negative ones as negative) and those whose
    discrepancy is over the problem threshold; a second tick names nobody; the Home tab's fleet numbers
    are the scan's."""
    d, expected = deployment, deployment.expected()
    settings = d.service.settings.model_copy(
        update={"tokens_alerts_channel": "CALERTS", "tokens_alert_thresholds": [10_000, 0]}
    )
    service = TokensService(settings, d.engine)
    alerts = service.tick().alerts
    balances = {(a.user_id, a.kind.value) for a in alerts if a.kind.value != "discrepancy"}
    assert balances == {
        (u, "negative" if e.current_remaining < 0 else "low_balance")
        for u, e in expected.items()
        if e.current_remaining < 10_000
    }
    problem = settings.tokens_problem_threshold
    assert {a.user_id for a in alerts if a.kind.value == "discrepancy"} == {
        u for u, e in expected.items() if e.listed(problem)
    }
    assert service.tick().alerts == ()
    fleet = service.home(ACTOR).fleet
    assert fleet is not None
    assert (fleet.users, fleet.negative, fleet.low_balances, fleet.discrepant) == (
        len(expected),
        sum(1 for e in expected.values() if e.current_remaining < 0),
        sum(1 for e in expected.values() if e.current_remaining < settings.tokens_lowbalance_threshold),
        sum(1 for e in expected.values() if e.listed(problem)),
    )
