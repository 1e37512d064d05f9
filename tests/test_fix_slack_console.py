"""A fix in the local console: the check's Propose fix and the approval's Approve pressed by typing their
numbers, the progress and the verified summary shown as the bot would post them."""

from __future__ import annotations

import io

from sqlalchemy import Engine

from bot.entrypoints.console import run_console
from core.services.service import TokensService
from core.settings import Settings
from tests.support.ledger import add_usage, add_user, remaining


def test_console_proposes_and_approves_a_fix_by_typing(settings: Settings, engine: Engine) -> None:
    with engine.begin() as conn:
        user = add_user(conn, remaining=90_000, used=10_000, email="console-fix@example.com")
        add_usage(conn, user, tokens=100_000, action="admin_grant", model=None)
        add_usage(conn, user, tokens=10_000, seconds=100)
        add_usage(conn, user, tokens=10_000, seconds=101)
    lines = iter(
        [
            "/tokens check console-fix@example.com",
            "1",
            "as UADMIN2",
            "1",
            "/tokens check console-fix@example.com",
            "quit",
        ]
    )
    service = TokensService(settings.model_copy(update={"tokens_approvals_channel": "approvals"}), engine)
    out = io.StringIO()
    run_console(service, "UADMIN1", read=lambda _prompt: next(lines), out=out)
    asked, decided = out.getvalue().split("You are now Slack user UADMIN2.")
    assert "[1] Propose fix: duplicates" in asked and "--- posted to approvals" in asked
    assert "Fix request #" in asked and "Ledger rows it inserts (1)" in asked and "[1] Approve" in asked
    assert "Applying: 1 of 1 — 1 applied, 0 skipped as stale, 0 failed" in decided
    assert "Result: 1 applied, 0 skipped as stale, 0 failed, of 1." in decided
    assert "1 now reconciled" in decided and "--- direct message to UADMIN1 ---" in decided
    assert "== Reconciled: console-fix@example.com ==" in decided
    with engine.connect() as conn:
        assert remaining(conn, user) == 90_000
