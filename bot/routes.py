"""From Slack-free inputs (who, what text, which button) to a rendered reply; shared by Slack and the console."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from bot import approval_routes as approvals
from bot import buttons, chart_routes
from bot.buttons import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    CHART_ACTION,
    CHECK_PAGE_ACTION,
    DISCREPANCIES_PAGE_ACTION,
    HISTORY_PAGE_ACTION,
    LOWBALANCE_PAGE_ACTION,
    OPEN_CHECK_ACTION,
    PROPOSE_ACTION,
    PROPOSE_BATCH_ACTION,
    PROPOSE_FIX_ACTION,
    RECOMPUTE_ACTION,
    TOP_PAGE_ACTION,
    CheckPage,
    DiscrepanciesPage,
    HistoryPage,
    LowBalancePage,
    TopPage,
)
from bot.command_models import (
    AdjustCommand,
    AdjustFormCommand,
    CancelCommand,
    ChartCommand,
    CheckCommand,
    Command,
    DiscrepanciesCommand,
    HelpCommand,
    HistoryCommand,
    LowBalanceCommand,
    ReconcileCommand,
    RejectCommand,
    RequestsCommand,
    TopCommand,
)
from bot.commands import ADJUST_EXAMPLE, parse_command
from bot.render.check import render_check
from bot.render.common import Reply, escape, message, render_help, render_unexpected_error, unescape
from bot.render.fleet import render_discrepancies, render_lowbalance, render_top
from bot.render.history import render_history
from bot.slack.audit import Audited
from bot.slack.port import SlackPort
from core.domain.approvals import Person, require_requester
from core.domain.errors import TokensBotError, UsageError
from core.services.service import TokensService

log = logging.getLogger(__name__)

# A route gets the service, the Slack port (for people and posting), who acted, and its parsed command or
# its button's validated payload (bot.buttons.PAYLOADS names the model for each action id).
CommandRoute = Callable[[TokensService, SlackPort, str, Any], Reply]
ActionRoute = Callable[[TokensService, SlackPort, str, Any], Reply]


class ActionReply(NamedTuple):
    """A button's answer, and whether it replaces the message the button was on (paging does; a decision
    on a shared approval message, a new view or a damaged button's refusal goes to the clicker alone)."""

    reply: Reply
    replace_original: bool


def _help(service: TokensService, slack: SlackPort, actor: str, command: HelpCommand) -> Reply:
    return render_help(command.problem)


def _check(service: TokensService, slack: SlackPort, actor: str, command: CheckCommand) -> Reply:
    return render_check(
        service.check(actor, command.user),
        can_ask=service.settings.may_ask(actor),
    )


def _check_page(service: TokensService, slack: SlackPort, actor: str, value: CheckPage) -> Reply:
    report = service.check(actor, value.u, page=value.p, initial_grant=value.g)
    return render_check(report, can_ask=service.settings.may_ask(actor))


def _history(service: TokensService, slack: SlackPort, actor: str, command: HistoryCommand) -> Reply:
    return render_history(service.history(actor, command.user))


def _history_page(service: TokensService, slack: SlackPort, actor: str, value: HistoryPage) -> Reply:
    return render_history(service.history(actor, value.u, page=value.p))


def _lowbalance(service: TokensService, slack: SlackPort, actor: str, command: LowBalanceCommand) -> Reply:
    return render_lowbalance(service.lowbalance(actor, command.threshold))


def _lowbalance_page(service: TokensService, slack: SlackPort, actor: str, value: LowBalancePage) -> Reply:
    return render_lowbalance(service.lowbalance(actor, value.t, page=value.p))


def _discrepancies(
    service: TokensService, slack: SlackPort, actor: str, command: DiscrepanciesCommand
) -> Reply:
    report = service.discrepancies(actor, command.minimum, cause=command.cause)
    return render_discrepancies(report, can_ask=service.settings.may_ask(actor))


def _discrepancies_page(
    service: TokensService, slack: SlackPort, actor: str, value: DiscrepanciesPage
) -> Reply:
    report = service.discrepancies(actor, value.m, cause=value.c, page=value.p)
    return render_discrepancies(report, can_ask=service.settings.may_ask(actor))


def _top(service: TokensService, slack: SlackPort, actor: str, command: TopCommand) -> Reply:
    return render_top(service.top(actor, command.n))


def _top_page(service: TokensService, slack: SlackPort, actor: str, value: TopPage) -> Reply:
    return render_top(service.top(actor, value.n, page=value.p))


def _adjust_form(service: TokensService, slack: SlackPort, actor: str, command: AdjustFormCommand) -> Reply:
    """Where the form could not be opened: a refusal for non-admins, else the command's usage."""
    require_requester(service.settings, Person(slack_id=actor, name=actor))
    raise UsageError(f"`adjust` needs a user, a delta and a reason, e.g. {ADJUST_EXAMPLE}.")


COMMAND_ROUTES: dict[type[Command], CommandRoute] = {
    HelpCommand: _help,
    CheckCommand: _check,
    ChartCommand: chart_routes.chart_command,
    HistoryCommand: _history,
    LowBalanceCommand: _lowbalance,
    DiscrepanciesCommand: _discrepancies,
    TopCommand: _top,
    AdjustCommand: approvals.adjust,
    AdjustFormCommand: _adjust_form,
    ReconcileCommand: approvals.reconcile,
    RequestsCommand: approvals.list_requests,
    RejectCommand: approvals.reject_with_reason,
    CancelCommand: approvals.cancel_by_command,
}
ACTION_ROUTES: dict[str, ActionRoute] = {
    CHECK_PAGE_ACTION: _check_page,
    # A list row's Check button opens the same view as a new message, so the list stays to click on.
    OPEN_CHECK_ACTION: _check_page,
    # The chart goes to the clicker's direct message; their reply says so, the check stays as it was.
    CHART_ACTION: chart_routes.chart_button,
    LOWBALANCE_PAGE_ACTION: _lowbalance_page,
    DISCREPANCIES_PAGE_ACTION: _discrepancies_page,
    TOP_PAGE_ACTION: _top_page,
    HISTORY_PAGE_ACTION: _history_page,
    APPROVE_ACTION: approvals.approve_button,
    CANCEL_ACTION: approvals.cancel_button,
    PROPOSE_ACTION: approvals.propose_button,
    RECOMPUTE_ACTION: approvals.recompute_button,
    PROPOSE_FIX_ACTION: approvals.propose_fix_button,
    PROPOSE_BATCH_ACTION: approvals.propose_batch_button,
}
# Buttons whose answer goes to the clicker alone instead of replacing the message clicked: a new view, a
# chart sent elsewhere, and decisions on an approval message everyone shares.
PRIVATE_ACTIONS = frozenset(
    {
        OPEN_CHECK_ACTION,
        CHART_ACTION,
        APPROVE_ACTION,
        CANCEL_ACTION,
        PROPOSE_ACTION,
        RECOMPUTE_ACTION,
        PROPOSE_FIX_ACTION,
        PROPOSE_BATCH_ACTION,
    }
)
# Paging a fleet list re-runs its scan: these buttons get a "working…" note when it is slow.
SLOW_ACTIONS = frozenset({LOWBALANCE_PAGE_ACTION, DISCREPANCIES_PAGE_ACTION, TOP_PAGE_ACTION})


def reply_to_command(service: TokensService, actor: str, text: str, *, slack: SlackPort) -> Reply:
    """Answer `/tokens <text>` typed by `actor`; never raises.

    Slack sends the text with `&`, `<` and `>` escaped as entities (its markup, such as `<!channel>`,
    stays raw): undone here, a reason is stored as the person typed it, and escaped again wherever shown.
    The text is parsed once; the audit line is made from the parsed command.
    """
    started = time.perf_counter()
    try:
        command = parse_command(unescape(text))
    except TokensBotError as exc:
        return _refused(Audited.command(actor, text, None), started, exc)
    what = Audited.command(actor, text, command)
    return _safely(lambda: COMMAND_ROUTES[type(command)](service, slack, actor, command), what, started)


def reply_to_form(service: TokensService, actor: str, command: Command, *, slack: SlackPort) -> Reply:
    """Answer a submitted form, read into its command (bot.forms) before the ack; never raises."""
    started = time.perf_counter()
    name = "adjust" if isinstance(command, AdjustCommand) else "reject"
    what = Audited.command(actor, name, command)
    return _safely(lambda: COMMAND_ROUTES[type(command)](service, slack, actor, command), what, started)


def reply_to_action(
    service: TokensService, actor: str, action_id: str, value: str, *, slack: SlackPort
) -> ActionReply:
    """Answer a button press by `actor`; never raises.

    The value is validated into its payload first: a damaged one is answered to the clicker alone and
    never replaces the message the button was on (which may be the approval message everyone shares).
    """
    started = time.perf_counter()
    what = Audited.action(actor, action_id, value)
    route = ACTION_ROUTES.get(action_id)
    try:
        if route is None:
            raise UsageError("That button is no longer supported; run the command again.")
        payload = buttons.read(buttons.PAYLOADS[action_id], value)
    except TokensBotError as exc:
        return ActionReply(_refused(what, started, exc), replace_original=False)
    reply = _safely(lambda: route(service, slack, actor, payload), what, started)
    return ActionReply(reply, replace_original=action_id not in PRIVATE_ACTIONS)


def _refused(what: Audited, started: float, exc: TokensBotError) -> Reply:
    """A refusal's text is escaped whole: core messages echo what was typed and name people and users."""
    what.record("refused", started, type(exc))
    return message(escape(str(exc)))


def _safely(run: Callable[[], Reply], what: Audited, started: float) -> Reply:
    """Every answer, refusal and failure is audited; the command's free text never reaches the log."""
    try:
        reply = run()
    except TokensBotError as exc:
        return _refused(what, started, exc)
    except Exception as exc:
        log.exception("unexpected error while answering %s", what)
        what.record("failed", started, type(exc))
        return render_unexpected_error()
    what.record("ok", started)
    return reply
