"""From Slack-free inputs (who, what text, which button) to a rendered reply; shared by Slack and the console."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from bot import approval_routes as approvals
from bot import buttons
from bot.buttons import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    CHECK_PAGE_ACTION,
    DISCREPANCIES_PAGE_ACTION,
    LOWBALANCE_PAGE_ACTION,
    OPEN_CHECK_ACTION,
    PROPOSE_ACTION,
    RECOMPUTE_ACTION,
    REJECT_ACTION,
    TOP_PAGE_ACTION,
    CheckPage,
    DamagedButtonError,
    DiscrepanciesPage,
    LowBalancePage,
    TopPage,
)
from bot.commands import (
    AdjustCommand,
    CancelCommand,
    CheckCommand,
    Command,
    DiscrepanciesCommand,
    HelpCommand,
    LowBalanceCommand,
    ReconcileCommand,
    RejectCommand,
    RequestsCommand,
    TopCommand,
    parse_command,
)
from bot.render.check import render_check
from bot.render.common import Reply, escape, message, render_help, render_unexpected_error, unescape
from bot.render.fleet import render_discrepancies, render_lowbalance, render_top
from bot.slack.audit import Audited
from bot.slack.port import Interaction, SlackPort
from core.domain.errors import TokensBotError, UsageError
from core.services.service import TokensService

log = logging.getLogger(__name__)

# A handler returns its reply, or an Interaction when it needs Slack (people's names, posting, updating).
# A command handler gets its parsed command, an action handler its button's validated payload
# (bot.buttons.PAYLOADS names the model for each action id).
CommandHandler = Callable[[TokensService, str, Any], Reply | Interaction]
ActionHandler = Callable[[TokensService, str, Any], Reply | Interaction]


class ActionReply(NamedTuple):
    """A button's answer. A plain Reply replaces the message the button was on (paging); an Interaction's
    answer goes to the clicker alone, because its message may be the approval message everyone shares."""

    reply: Reply
    replace_original: bool


def _help(service: TokensService, actor: str, command: HelpCommand) -> Reply:
    return render_help(command.problem)


def _check(service: TokensService, actor: str, command: CheckCommand) -> Reply:
    return render_check(service.check(actor, command.user))


def _check_page(service: TokensService, actor: str, value: CheckPage) -> Reply:
    report = service.check(actor, value.u, page=value.p, initial_grant=value.g)
    return render_check(report)


def _lowbalance(service: TokensService, actor: str, command: LowBalanceCommand) -> Reply:
    return render_lowbalance(service.lowbalance(actor, command.threshold))


def _lowbalance_page(service: TokensService, actor: str, value: LowBalancePage) -> Reply:
    return render_lowbalance(service.lowbalance(actor, value.t, page=value.p))


def _discrepancies(service: TokensService, actor: str, command: DiscrepanciesCommand) -> Reply:
    return render_discrepancies(service.discrepancies(actor, command.minimum))


def _discrepancies_page(service: TokensService, actor: str, value: DiscrepanciesPage) -> Reply:
    return render_discrepancies(service.discrepancies(actor, value.m, page=value.p))


def _top(service: TokensService, actor: str, command: TopCommand) -> Reply:
    return render_top(service.top(actor, command.n))


def _top_page(service: TokensService, actor: str, value: TopPage) -> Reply:
    return render_top(service.top(actor, value.n, page=value.p))


COMMAND_HANDLERS: dict[type[Command], CommandHandler] = {
    HelpCommand: _help,
    CheckCommand: _check,
    LowBalanceCommand: _lowbalance,
    DiscrepanciesCommand: _discrepancies,
    TopCommand: _top,
    AdjustCommand: approvals.adjust,
    ReconcileCommand: approvals.reconcile,
    RequestsCommand: approvals.list_requests,
    RejectCommand: approvals.reject_with_reason,
    CancelCommand: approvals.cancel_by_command,
}
ACTION_HANDLERS: dict[str, ActionHandler] = {
    CHECK_PAGE_ACTION: _check_page,
    # A list row's Check button opens the same view as a new message, so the list stays to click on.
    OPEN_CHECK_ACTION: _check_page,
    LOWBALANCE_PAGE_ACTION: _lowbalance_page,
    DISCREPANCIES_PAGE_ACTION: _discrepancies_page,
    TOP_PAGE_ACTION: _top_page,
    APPROVE_ACTION: approvals.approve_button,
    REJECT_ACTION: approvals.reject_button,
    CANCEL_ACTION: approvals.cancel_button,
    PROPOSE_ACTION: approvals.propose_button,
    RECOMPUTE_ACTION: approvals.recompute_button,
}
# Buttons whose answer is a new message rather than a replacement of the one clicked.
NEW_MESSAGE_ACTIONS = frozenset({OPEN_CHECK_ACTION})
# Paging a fleet list re-runs its scan: these buttons get a "working…" note when it is slow.
SLOW_ACTIONS = frozenset({LOWBALANCE_PAGE_ACTION, DISCREPANCIES_PAGE_ACTION, TOP_PAGE_ACTION})


def reply_to_command(
    service: TokensService, actor: str, text: str, *, slack: SlackPort | None = None
) -> Reply:
    """Answer `/tokens <text>` typed by `actor`; never raises.

    Slack sends the text with `&`, `<` and `>` escaped as entities (its markup, such as `<!channel>`,
    stays raw): undone here, a reason is stored as the person typed it, and escaped again wherever shown.
    """

    def run() -> Reply:
        command = parse_command(unescape(text))
        return _finish(COMMAND_HANDLERS[type(command)](service, actor, command), slack)

    return _safely(run, what=Audited.command(actor, text))


def reply_to_action(
    service: TokensService, actor: str, action_id: str, value: str, *, slack: SlackPort | None = None
) -> ActionReply:
    """Answer a button press by `actor`; never raises.

    The value is validated into its payload first: a damaged one is answered to the clicker alone and
    never replaces the message the button was on (which may be the approval message everyone shares).
    """
    in_place = True

    def run() -> Reply:
        nonlocal in_place
        handler = ACTION_HANDLERS.get(action_id)
        if handler is None:
            raise UsageError("That button is no longer supported; run the command again.")
        try:
            payload = buttons.read(buttons.PAYLOADS[action_id], value)
        except DamagedButtonError:
            in_place = False
            raise
        answer = handler(service, actor, payload)
        in_place = isinstance(answer, Reply) and action_id not in NEW_MESSAGE_ACTIONS
        return _finish(answer, slack)

    reply = _safely(run, what=Audited.action(actor, action_id, value))
    return ActionReply(reply, replace_original=in_place)


def _finish(answer: Reply | Interaction, slack: SlackPort | None) -> Reply:
    if isinstance(answer, Reply):
        return answer
    if slack is None:
        raise UsageError("That needs Slack (or the console), which this caller did not provide.")
    return answer(slack)


def _safely(run: Callable[[], Reply], *, what: Audited) -> Reply:
    """Every answer, refusal and failure is audited; the command's free text never reaches the log.

    A refusal's text is escaped whole: core messages echo what was typed and name people and users.
    """
    started = time.perf_counter()
    try:
        reply = run()
    except TokensBotError as exc:
        what.record("refused", started, type(exc))
        return message(escape(str(exc)))
    except Exception as exc:
        log.exception("unexpected error while answering %s", what)
        what.record("failed", started, type(exc))
        return render_unexpected_error()
    what.record("ok", started)
    return reply
