"""Handlers for adjust, reconcile, requests and the approval buttons: core decisions, then Slack side effects."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
from bot.slack.port import Interaction, SlackPort
from core.domain.approvals import ApprovalRequest, Decision, LedgerSnapshot, Person, RequestStatus
from core.services.service import TokensService

log = logging.getLogger(__name__)


def adjust(service: TokensService, actor: str, command: AdjustCommand) -> Interaction:
    def run(slack: SlackPort) -> Reply:
        request = service.request_adjustment(slack.person(actor), command.user, command.delta, command.reason)
        return _announce(service, slack, request)

    return run


def reconcile(service: TokensService, actor: str, command: ReconcileCommand) -> Reply:
    return render_reconcile(service.reconcile(actor, command.user, initial_grant=command.initial_grant))


def list_requests(service: TokensService, actor: str, command: RequestsCommand) -> Interaction:
    def run(slack: SlackPort) -> Reply:
        service.require_viewer(actor)
        # Overdue requests are closed here rather than by a scheduler: their messages then say so too.
        for request in service.expire_due():
            _publish(service, slack, request, None)
        return render_request_list(service.pending_requests(actor))

    return run


def reject_with_reason(service: TokensService, actor: str, command: RejectCommand) -> Interaction:
    return _deciding(
        service, actor, lambda person: service.reject(person, command.request_id, command.reason)
    )


def cancel_by_command(service: TokensService, actor: str, command: CancelCommand) -> Interaction:
    return _deciding(service, actor, lambda person: service.cancel(person, command.request_id))


# Button handlers get their value validated (bot.buttons), and answer the clicker alone: an Interaction's
# reply never replaces the shared approval message.


def approve_button(service: TokensService, actor: str, value: RequestButton) -> Interaction:
    return _deciding(service, actor, lambda person: service.approve(person, value.r))


def reject_button(service: TokensService, actor: str, value: RequestButton) -> Interaction:
    return _deciding(service, actor, lambda person: service.reject(person, value.r))


def cancel_button(service: TokensService, actor: str, value: RequestButton) -> Interaction:
    return _deciding(service, actor, lambda person: service.cancel(person, value.r))


def propose_button(service: TokensService, actor: str, value: ProposeCorrection) -> Interaction:
    def run(slack: SlackPort) -> Reply:
        seen = LedgerSnapshot(rows=value.n, last_at=value.t)
        request = service.propose_correction(slack.person(actor), value.u, value.g, seen)
        return _announce(service, slack, request)

    return run


def recompute_button(service: TokensService, actor: str, value: Recompute) -> Interaction:
    """A fresh reconciliation for the clicker alone: the shared message it came from stays as it is."""

    def run(slack: SlackPort) -> Reply:
        return render_reconcile(service.reconcile(actor, value.u, initial_grant=value.g))

    return run


def _announce(service: TokensService, slack: SlackPort, request: ApprovalRequest) -> Reply:
    """Post the approval message and remember where it is; the request stands even if Slack refuses."""
    channel = service.settings.tokens_approvals_channel
    assert channel, "the core refuses requests while TOKENS_APPROVALS_CHANNEL is unset"
    ts = slack.post(channel, render_request(request))
    if ts is not None:
        service.attach_message(request.id, channel, ts)
    return render_created(request, channel, posted=ts is not None)


def _deciding(service: TokensService, actor: str, decide: Callable[[Person], Decision]) -> Interaction:
    def run(slack: SlackPort) -> Reply:
        decision = decide(slack.person(actor))
        _publish(service, slack, decision.request, decision)
        return render_decision(decision)

    return run


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
