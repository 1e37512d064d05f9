"""Telling Slack what the core already decided and committed: shared by the approval routes (after a click
or a command) and by `tokens-bot tick` (after an expiry or a due reminder), so both say it the same way.

Every function here is best-effort: the database outcome stands whatever Slack answers, so a failure is
logged, never raised, and the caller carries on with the next request.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.render.approvals import render_reconcile, render_request, render_requester_notice
from bot.render.reminders import render_reminder
from bot.slack.port import SlackPort
from core.domain.approvals import ApprovalRequest, Decision, RequestStatus
from core.services.service import TokensService

log = logging.getLogger(__name__)


def publish(
    service: TokensService, slack: SlackPort, request: ApprovalRequest, decision: Decision | None
) -> None:
    """After the commit: update the message in place, thread the fresh reconciliation, tell the requester.

    `decision` is None when nobody clicked (an expiry found by `/tokens requests` or the tick): the
    requester is then always told. Each step is best-effort; a failure is logged and the clicker still
    learns what their click did, because the database outcome already stands.
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


def remind(slack: SlackPort, approvers: list[str], request: ApprovalRequest, now: datetime) -> bool:
    """Reply in the request's thread that it still waits; False (and logged) when Slack did not take it."""
    if not (request.channel and request.message_ts):
        # The core only picks requests with a message; without one there is no thread to remind in.
        return False
    try:
        reply = render_reminder(request, now, approvers)
        if slack.post(request.channel, reply, thread_ts=request.message_ts) is not None:
            return True
        log.warning(
            "Slack did not take the reminder for request #%s; the next is due in an interval", request.id
        )
    except Exception:
        log.exception("reminding approvers of request #%s failed", request.id)
    return False
