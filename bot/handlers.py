"""From Slack-free inputs (who, what text, which button) to a rendered reply; shared by Slack and the console."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from bot.render.check import CHECK_PAGE_ACTION, render_check
from bot.render.common import Reply, message, render_help, render_unexpected_error
from core.commands import CheckCommand, Command, HelpCommand, parse_command
from core.errors import TokensBotError, UsageError
from core.service import TokensService

log = logging.getLogger(__name__)

CommandHandler = Callable[[TokensService, str, Any], Reply]
ActionHandler = Callable[[TokensService, str, dict[str, Any]], Reply]


def _help(service: TokensService, actor: str, command: HelpCommand) -> Reply:
    return render_help(command.problem)


def _check(service: TokensService, actor: str, command: CheckCommand) -> Reply:
    return render_check(service.check(actor, command.user))


def _check_page(service: TokensService, actor: str, value: dict[str, Any]) -> Reply:
    report = service.check(actor, UUID(value["u"]), page=int(value["p"]), initial_grant=value.get("g"))
    return render_check(report)


COMMAND_HANDLERS: dict[type[Command], CommandHandler] = {
    HelpCommand: _help,
    CheckCommand: _check,
}
ACTION_HANDLERS: dict[str, ActionHandler] = {
    CHECK_PAGE_ACTION: _check_page,
}


def reply_to_command(service: TokensService, actor: str, text: str) -> Reply:
    """Answer `/tokens <text>` typed by `actor`; never raises."""

    def run() -> Reply:
        command = parse_command(text)
        return COMMAND_HANDLERS[type(command)](service, actor, command)

    return _safely(run, what=f"command {text[:80]!r}")


def reply_to_action(service: TokensService, actor: str, action_id: str, value: str) -> Reply:
    """Answer a button press by `actor`; never raises."""

    def run() -> Reply:
        handler = ACTION_HANDLERS.get(action_id)
        if handler is None:
            raise UsageError("That button is no longer supported; run the command again.")
        try:
            payload = json.loads(value)
        except ValueError as exc:
            raise UsageError("That button's data is damaged; run the command again.") from exc
        return handler(service, actor, payload)

    return _safely(run, what=f"action {action_id!r}")


def _safely(run: Callable[[], Reply], *, what: str) -> Reply:
    try:
        return run()
    except TokensBotError as exc:
        return message(str(exc))
    except Exception:
        log.exception("unexpected error while answering %s", what)
        return render_unexpected_error()
