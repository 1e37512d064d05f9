"""The approval flow in the local console, and the amounts and commands it starts from."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import Engine, text

from bot.amounts import parse_amount
from bot.command_models import AdjustCommand, RejectCommand
from bot.commands import parse_command
from bot.entrypoints.console import run_console
from core.domain.errors import UsageError
from core.services.service import TokensService
from core.settings import Settings
from tests.support.ledger import add_usage, add_user, remaining


def test_amounts_are_exact_whole_tokens_in_every_usual_spelling() -> None:
    """`+50000`, `-1200`, `50_000`, `50,000`, `50k`, `1.5M` read exactly; fractions and junk are refused."""
    spellings = {"+50000": 50_000, "-1200": -1_200, "50_000": 50_000, "50,000": 50_000, "50k": 50_000,
                 "1.5M": 1_500_000, "-2.25k": -2_250, "+0": 0, "12,345,678": 12_345_678}  # fmt: skip
    assert {word: parse_amount(word) for word in spellings} == spellings
    for bad in ("1.5", "1.0005k", "5,00", "1e3", "k", "--5", "50kk", "1,2345", "½"):
        with pytest.raises(UsageError):
            parse_amount(bad)
    assert parse_command("adjust ada@example.com -1.2k  double   charge") == AdjustCommand(
        user="ada@example.com", delta=-1_200, reason="double charge"
    )
    assert parse_command("reject #12 not needed") == RejectCommand(request_id=12, reason="not needed")


def test_console_runs_the_whole_approval_flow_by_typing(settings: Settings, engine: Engine) -> None:
    """In the console an admin asks, sees the posted message, switches user with `as` and presses Approve."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=100_000, email="console-grant@example.com")
        add_usage(conn, user, tokens=100_000, action="admin_grant", model=None)
    lines = iter(
        [
            "/tokens adjust console-grant@example.com +25k welcome back",
            "as UADMIN2",
            "1",
            "/tokens requests",
            "quit",
        ]
    )
    service = TokensService(settings.model_copy(update={"tokens_approvals_channel": "approvals"}), engine)
    out = io.StringIO()
    run_console(service, "UADMIN1", read=lambda _prompt: next(lines), out=out)
    shown = out.getvalue()
    posted, decided = shown.split("You are now Slack user UADMIN2.")
    assert "--- posted to approvals" in posted and "[1] Approve" in posted and "[2] Reject" in posted
    assert "is waiting for a second person's approval in <#approvals>" in posted
    assert "--- message console.1 in approvals updated ---" in decided
    assert "Approved by UADMIN2 (<@UADMIN2>)" in decided and "in the thread of message console.1" in decided
    assert "--- direct message to UADMIN1 ---" in decided and "You approved" in decided
    with engine.connect() as conn:
        assert remaining(conn, user) == 125_000
        assert (
            conn.execute(
                text("SELECT count(*) FROM token_usage WHERE user_id = :u AND action_type = 'admin_grant'"),
                {"u": user},
            ).scalar_one()
            == 2
        )
