"""Routes for adjust, reconcile, requests and the approval buttons, each strictly in order: Slack lookups
(who is asking) before the service call, the core's decision, then publishing it (message update,
thread, direct message) and the reply to the person."""

from __future__ import annotations

import logging

from bot.buttons import ProposeCorrection, Recompute, RequestButton
from bot.commands import AdjustCommand, CancelCommand, ReconcileCommand, RejectCommand, RequestsCommand
from bot.render.approvals import (
    render_created,
    render_decision,
    render_reconcile,
    render_request,
    render_request_list,
    render_requester_notice,
)
from bot.render.common import Reply
from bot.slack.port import SlackPort
from core.domain.approvals import ApprovalRequest, Decision, LedgerSnapshot, RequestStatus
from core.services.service import TokensService

log = logging.getLogger(__name__)


def adjust(service: TokensService, slack: SlackPort, actor: str, command: AdjustCommand) -> Reply:
    request = service.request_adjustment(slack.person(actor), command.user, command.delta, command.reason)
    return _announce(service, slack, request)


def reconcile(service: TokensService, slack: SlackPort, actor: str, command: ReconcileCommand) -> Reply:
    return render_reconcile(service.reconcile(actor, command.user, initial_grant=command.initial_grant))


def list_requests(service: TokensService, slack: SlackPort, actor: str, command: RequestsCommand) -> Reply:
    service.require_viewer(actor)
    # Overdue requests are closed here rather than by a scheduler: their messages then say so too.
    for request in service.expire_due():
        _publish(service, slack, request, None)
    return render_request_list(service.pending_requests(actor))


def reject_with_reason(service: TokensService, slack: SlackPort, actor: str, command: RejectCommand) -> Reply:
    return _published(service, slack, service.reject(slack.person(actor), command.request_id, command.reason))


def cancel_by_command(service: TokensService, slack: SlackPort, actor: str, command: CancelCommand) -> Reply:
    return _published(service, slack, service.cancel(slack.person(actor), command.request_id))


# The buttons get their value validated (bot.buttons) and answer the clicker alone (bot.routes): their
# message may be the approval message everyone shares.


def approve_button(service: TokensService, slack: SlackPort, actor: str, value: RequestButton) -> Reply:
    return _published(service, slack, service.approve(slack.person(actor), value.r))


def reject_button(service: TokensService, slack: SlackPort, actor: str, value: RequestButton) -> Reply:
    return _published(service, slack, service.reject(slack.person(actor), value.r))


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
    _publish(service, slack, decision.request, decision)
    return render_decision(decision)


def _publish(
    service: TokensService, slack: SlackPort, request: ApprovalRequest, decision: Decision | None
) -> None:
    """After the commit: update the message in place, thread the fresh reconciliation, tell the requester.

    Each step is best-effort; a failure is logged and the clicker still learns what their click did,
    because the database outcome already stands.
    """
    try:
        if request.channel and request.message_ts:
            slack.update(request.channel, request.message_ts, render_request(request))
            if decision is not None and decision.outcome is RequestStatus.APPLIED:
                grant = request.correction.explicit_initial_grant if request.correction else None
                report = service.reconcile(decision.actor.slack_id, request.user.user_id, initial_grant=grant)
                slack.post(request.channel, render_reconcile(report), thread_ts=request.message_ts)
        if decision is None or decision.actor.slack_id != request.requester.slack_id:
            slack.notify(request.requester.slack_id, render_requester_notice(request))
    except Exception:
        log.exception("after request #%s was %s, telling Slack failed", request.id, request.status.value)
