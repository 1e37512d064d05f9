"""Routes for adjust, reconcile, requests and the approval buttons, each strictly in order: Slack lookups
(who is asking) before the service call, the core's decision, then publishing it (message update,
thread, direct message) and the reply to the person."""

from __future__ import annotations

from bot.buttons import ProposeBatch, ProposeCorrection, ProposeFix, Recompute, RequestButton
from bot.command_models import AdjustCommand, CancelCommand, ReconcileCommand, RejectCommand, RequestsCommand
from bot.publishing import finish_fix_in_slack, post_fix_list, publish
from bot.render.approvals import (
    render_created,
    render_decision,
    render_request,
    render_request_list,
    title,
)
from bot.render.common import Reply, message
from bot.render.fixes import progress_line, render_verification
from bot.render.reconcile import render_reconcile
from bot.slack.port import SlackPort
from core.domain.approvals import ApprovalRequest, Decision, RequestStatus
from core.domain.models import LedgerSnapshot
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
    """An approved fix is applied here, after the ack: its items in chunks, its message showing progress,
    then verified; the clicker's answer is the verified summary."""
    decision = service.approve(slack.person(actor), value.r)
    if decision.outcome is not RequestStatus.APPLYING:
        return _published(service, slack, decision)
    publish(service, slack, decision.request, decision)
    progress = finish_fix_in_slack(service, slack, decision.request.id)
    name = f"You approved {title(decision.request)}"
    if not progress.done:
        return message(f":gear: {name}; another run is applying it now. {progress_line(progress)}")
    return render_verification(name, progress)


def cancel_button(service: TokensService, slack: SlackPort, actor: str, value: RequestButton) -> Reply:
    return _published(service, slack, service.cancel(slack.person(actor), value.r))


def propose_button(service: TokensService, slack: SlackPort, actor: str, value: ProposeCorrection) -> Reply:
    seen = LedgerSnapshot(rows=value.n, last_at=value.t)
    request = service.propose_correction(slack.person(actor), value.u, value.g, seen)
    return _announce(service, slack, request)


def propose_fix_button(service: TokensService, slack: SlackPort, actor: str, value: ProposeFix) -> Reply:
    seen = LedgerSnapshot(rows=value.n, last_at=value.t)
    return _announce(service, slack, service.propose_fix(slack.person(actor), value.u, value.c, seen))


def propose_batch_button(service: TokensService, slack: SlackPort, actor: str, value: ProposeBatch) -> Reply:
    """One request for every user of a cause; its complete list goes in the thread before anyone decides."""
    request = service.propose_batch(slack.person(actor), value.c, value.m)
    reply = _announce(service, slack, request)
    posted = service.fix_request(request.id)
    if not post_fix_list(service, slack, actor, posted) and posted.message_ts:
        # The request stands; approvers can still read its largest items on the message.
        return message(f"{reply.text} :warning: Slack did not take its list of users.")
    return reply


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
