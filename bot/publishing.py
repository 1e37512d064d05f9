"""Telling Slack what the core already decided and committed: shared by the approval routes (after a click
or a command) and by `tokens-bot tick` (after an expiry or a due reminder), so both say it the same way.

Every function here is best-effort: the database outcome stands whatever Slack answers, so a failure is
logged, never raised, and the caller carries on with the next request.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.render.approvals import render_request, render_requester_notice, summary, title
from bot.render.fixes import items_csv, render_verification
from bot.render.reconcile import render_reconcile
from bot.render.reminders import render_reminder
from bot.slack.port import SlackPort
from core.domain.approvals import ApprovalRequest, Decision, RequestStatus
from core.domain.fix_batches import BatchProgress
from core.services.service import TokensService

log = logging.getLogger(__name__)

# How many of a fix's items are applied between two updates of its message: each is its own transaction,
# so a chunk is a few seconds of work, and Slack's rate limit on updating one message is never near.
FIX_CHUNK = 200


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
        # A vote short of the quorum has not decided anything yet, and an approved fix tells its requester
        # once it is verified (finish_fix_in_slack), not while applying.
        if decision is not None and decision.outcome in (RequestStatus.PENDING, RequestStatus.APPLYING):
            return
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


def post_fix_list(service: TokensService, slack: SlackPort, actor: str, request: ApprovalRequest) -> bool:
    """A batch's complete list of users as a CSV file in its approval message's thread; False (and
    logged) when there is no message or Slack did not take the file."""
    if not (request.channel and request.message_ts):
        return False
    try:
        content = items_csv(service.fix_items(actor, request.id))
        name = f"fix-request-{request.id}-users.csv"
        listed = f"Fix request #{request.id}: every user it changes"
        if slack.upload(request.channel, name, content, listed, thread_ts=request.message_ts):
            return True
        log.warning("Slack did not take the list of fix request #%s", request.id)
    except Exception:
        log.exception("posting the list of fix request #%s failed", request.id)
    return False


def finish_fix_in_slack(
    service: TokensService, slack: SlackPort, request_id: int, *, chunk: int = FIX_CHUNK
) -> BatchProgress:
    """Apply an approved fix's pending items in chunks, its message showing the progress in place, then
    verify and close it: the message ends with the summary, which is also posted in its thread (led by a
    warning when a fix did not do what it promised) and sent to the requester.

    Used by the Approve click and by `tokens-bot tick` for fixes an interruption left half applied: each
    item is applied exactly once whoever runs this, and a request someone else closed meanwhile is only
    reported. Slack failures are logged; the database work carries on regardless.
    """
    request = service.fix_request(request_id)
    progress = service.fix_progress(request_id)
    while not progress.done:
        pending = progress.pending
        progress = service.apply_fix(request_id, limit=chunk)
        _show(slack, request, progress)
        if progress.pending == pending:
            # Nothing left this worker could take: another one holds the rest, and finishes the request.
            break
    decision, progress = service.finish_fix(request_id)
    if decision is None:
        return progress
    closed = decision.request
    _show(slack, closed, progress)
    try:
        verified = render_verification(title(closed), progress)
        if closed.channel and closed.message_ts:
            slack.post(closed.channel, verified, thread_ts=closed.message_ts)
        slack.notify(closed.requester.slack_id, render_verification(f"Your {summary(closed)}", progress))
    except Exception:
        log.exception("after fix request #%s was verified, telling Slack failed", request_id)
    return progress


def _show(slack: SlackPort, request: ApprovalRequest, progress: BatchProgress) -> None:
    if not (request.channel and request.message_ts):
        return
    try:
        slack.update(request.channel, request.message_ts, render_request(request, progress))
    except Exception:
        log.exception("showing the progress of fix request #%s failed", request.id)
