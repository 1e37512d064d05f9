"""Routes for adjust, reconcile, requests and the approval buttons, each strictly in order: Slack lookups
(who is asking) before the service call, the core's decision, then publishing it (message update,
thread, direct message) and the reply to the person."""

from __future__ import annotations

from bot.buttons import ProposeCorrection, Recompute, RequestButton
from bot.commands import AdjustCommand, CancelCommand, ReconcileCommand, RejectCommand, RequestsCommand
from bot.publishing import publish
from bot.render.approvals import (
    render_created,
    render_decision,
    render_reconcile,
    render_request,
    render_request_list,
)
from bot.render.common import Reply
from bot.slack.port import SlackPort
from core.domain.approvals import ApprovalRequest, Decision, LedgerSnapshot
from core.services.service import TokensService


def adjust(service: TokensService, slack: SlackPort, actor: str, command: AdjustCommand) -> Reply:
    request = service.request_adjustment(slack.person(actor), command.user, command.delta, command.reason)
    return _announce(service, slack, request)


def reconcile(service: TokensService, slack: SlackPort, actor: str, command: ReconcileCommand) -> Reply:
    return render_reconcile(service.reconcile(actor, command.user, initial_grant=command.initial_grant))


def list_requests(service: TokensService, slack: SlackPort, actor: str, command: RequestsCommand) -> Reply:
    service.require_viewer(actor)
    # `tokens-bot tick` closes overdue requests every minute; closing them here too means a list never
    # shows one that expired since the last tick (or where no tick runs). Their messages say so as well.
    for request in service.expire_due():
        publish(service, slack, request, None)
    return render_request_list(service.pending_requests(actor))


def reject_with_reason(service: TokensService, slack: SlackPort, actor: str, command: RejectCommand) -> Reply:
    return _published(service, slack, service.reject(slack.person(actor), command.request_id, command.reason))


def cancel_by_command(service: TokensService, slack: SlackPort, actor: str, command: CancelCommand) -> Reply:
    return _published(service, slack, service.cancel(slack.person(actor), command.request_id))


# The buttons get their value validated (bot.buttons) and answer the clicker alone (bot.routes): their
# message may be the approval message everyone shares.


def approve_button(service: TokensService, slack: SlackPort, actor: str, value: RequestButton) -> Reply:
    return _published(service, slack, service.approve(slack.person(actor), value.r))


def cancel_button(service: TokensService, slack: SlackPort, actor: str, value: RequestButton) -> Reply:
    return _published(service, slack, service.cancel(slack.person(actor), value.r))


def propose_button(service: TokensService, slack: SlackPort, actor: str, value: ProposeCorrection) -> Reply:
    seen = LedgerSnapshot(rows=value.n, last_at=value.t)
    request = service.propose_correction(slack.person(actor), value.u, value.g, seen)
    return _announce(service, slack, request)


def recompute_button(service: TokensService, slack: SlackPort, actor: str, value: Recompute) -> Reply:
    """A fresh reconciliation for the clicker alone: the shared message it came from stays as it is."""
    return render_reconcile(service.reconcile(actor, value.u, initial_grant=value.g))


def _announce(service: TokensService, slack: SlackPort, request: ApprovalRequest) -> Reply:
    """Post the approval message and remember where it is; the request stands even if Slack refuses."""
    channel = service.settings.tokens_approvals_channel
    assert channel, "the core refuses requests while TOKENS_APPROVALS_CHANNEL is unset"
    ts = slack.post(channel, render_request(request))
    if ts is not None:
        service.attach_message(request.id, channel, ts)
    return render_created(request, channel, posted=ts is not None)


def _published(service: TokensService, slack: SlackPort, decision: Decision) -> Reply:
    publish(service, slack, decision.request, decision)
    return render_decision(decision)
