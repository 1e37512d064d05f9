"""Approval messages, request lists and the notes that tell people what a decision did."""

from __future__ import annotations

import re

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.buttons import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    PROPOSE_ACTION,
    RECOMPUTE_ACTION,
    REJECT_ACTION,
    Recompute,
    RequestButton,
)
from bot.render.common import (
    MAX_BLOCKS,
    MAX_CONFIRM_TEXT,
    MAX_FIELD_TEXT,
    Reply,
    actions,
    button,
    clip,
    context,
    escape,
    money,
    section,
    signed,
    tokens,
)
from bot.render.fixes import fix_change, fix_fields, fix_rows, outcome_blocks
from core.domain.approvals import (
    ApprovalRequest,
    Decision,
    Person,
    ReconcileReport,
    RequestKind,
    RequestStatus,
    when,
)
from core.domain.fix_batches import BatchProgress

__all__ = [
    "APPROVE_ACTION",
    "CANCEL_ACTION",
    "PROPOSE_ACTION",
    "RECOMPUTE_ACTION",
    "REJECT_ACTION",
]
# Room enough for any real reason, leaving the rest of a 3,000-character context line for the names.
MAX_REASON_SHOWN = 2000
# What Slack's user ids look like: only such an id becomes a mention. The approvals channel comes from
# the settings (the console names it `approvals`): a link to it is made of word characters alone.
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,20}$")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def who(person: Person) -> str:
    """A name people recognise beside the mention Slack turns into a live link.

    The name is whatever the person typed into their Slack profile, so it is escaped; the mention is
    the bot's own markup, made only from an id that is shaped like one.
    """
    if SLACK_USER_ID.match(person.slack_id):
        return f"{escape(person.name)} (<@{person.slack_id}>)"
    return f"{escape(person.name)} ({escape(person.slack_id)})"


def _label(request: ApprovalRequest | ReconcileReport) -> str:
    """The user's email (or id) as it may appear in mrkdwn: it comes from the product's database."""
    return escape(request.user.label)


def title(request: ApprovalRequest) -> str:
    if request.kind is RequestKind.CORRECTION:
        return f"Correction request #{request.id}"
    if request.kind is RequestKind.FIX:
        return f"Fix request #{request.id}"
    assert request.delta is not None
    return f"{'Grant' if request.delta > 0 else 'Deduction'} request #{request.id}"


def summary(request: ApprovalRequest) -> str:
    """What a request asks, in one line of mrkdwn: `Grant request #12 (+50,000 tokens for ada@example.com)`."""
    return f"{title(request)} ({_change(request)} for {_label(request)})"


def render_request(request: ApprovalRequest, progress: BatchProgress | None = None) -> Reply:
    """The approval message: what would change and why, then the buttons or, once decided, the outcome
    (for an approved fix, with its `progress` while applying and its verified summary after)."""
    blocks: list[Block] = [
        HeaderBlock(text=title(request)),
        _facts(request),
        section(f"*Reason*\n{escape(request.reason)}"),
        *(fix_rows(request.fix) if request.fix is not None else []),
    ]
    if request.status is RequestStatus.PENDING:
        if request.quorum > 1:
            blocks.append(context(votes_line(request)))
        blocks.append(actions(*_decision_buttons(request)))
    else:
        blocks.append(context(outcome_line(request)))
        blocks += outcome_blocks(progress)
        if request.status is RequestStatus.STALE:
            blocks.append(actions(button("Recompute", RECOMPUTE_ACTION, _recompute_value(request))))
    return Reply(
        text=f"{title(request)}: {_change(request)} for {_label(request)} — {_state(request)}",
        blocks=blocks,
    )


def votes_line(request: ApprovalRequest) -> str:
    """How far a request that needs several approvers has come: `1 of 2 approvals: Bea (@bea)`."""
    given = ", ".join(who(vote.voter) for vote in request.votes) or "none yet"
    return f":ballot_box_with_check: {len(request.votes)} of {request.quorum} approvals: {given}"


def outcome_line(request: ApprovalRequest) -> str:
    """The line that replaces the buttons: the outcome and both names."""
    asked = f"Requested by {who(request.requester)}."
    at = when(request.decided_at) if request.decided_at else ""
    by = who(request.decider) if request.decider else "tokens-bot"
    if request.status is RequestStatus.APPLYING:
        return f":gear: *Approved* by {by} at {at}; its items are being applied. {asked}"
    if request.status is RequestStatus.APPLIED and request.fix is not None:
        return f":white_check_mark: *Approved* by {by} at {at} and applied. {asked}"
    if request.status is RequestStatus.APPLIED:
        return (
            f":white_check_mark: *Approved* by {by} at {at}; balance {tokens(request.balance_before or 0)}"
            f" → {tokens(request.balance_after or 0)}. {asked}"
        )
    if request.status is RequestStatus.REJECTED:
        # The reason is the one free text here: clipped on its own, so both names always stay readable.
        reason = clip(escape(request.decision_reason or ""), MAX_REASON_SHOWN)
        return f":x: *Rejected* by {by} at {at}: {reason}. {asked}"
    if request.status is RequestStatus.CANCELLED:
        return f":heavy_minus_sign: *Cancelled* by {by} at {at}. {asked}"
    if request.status is RequestStatus.EXPIRED:
        return f":hourglass: *Expired* at {when(request.expires_at)} without a decision; it cannot be approved. {asked}"
    return (
        f":warning: *Stale*: new ledger rows arrived after this correction was proposed, so {by} could not"
        f" apply it at {at}. Nothing was changed. {asked}"
    )


def render_request_list(requests: list[ApprovalRequest]) -> Reply:
    """`/tokens requests`: each pending request with its buttons, oldest first."""
    if not requests:
        return Reply(text="No pending requests.", blocks=[section("No pending requests.")])
    shown = requests[: (MAX_BLOCKS - 2) // 2]
    blocks: list[Block] = [HeaderBlock(text=f"Pending requests ({len(requests)})")]
    for request in shown:
        blocks.append(
            section(
                f"*{title(request)}* — {_change(request)} for {_label(request)}\n{escape(request.reason)}\n"
                f"asked by {who(request.requester)} · expires {when(request.expires_at)}"
                + (f"\n{votes_line(request)}" if request.quorum > 1 else "")
            )
        )
        blocks.append(actions(*_decision_buttons(request)))
    if len(requests) > len(shown):
        blocks.append(context(f"…and {len(requests) - len(shown)} more, shown as older ones are decided."))
    return Reply(text=f"{len(requests)} pending request(s)", blocks=blocks)


def render_created(request: ApprovalRequest, channel: str, *, posted: bool) -> Reply:
    """The requester's ephemeral note: the request is waiting, and where."""
    shown = f"<#{channel}>" if _CHANNEL_NAME.match(channel) else escape(channel)
    where = f"in {shown}" if posted else "in `/tokens requests` (posting to the approvals channel failed)"
    text = (
        f":hourglass_flowing_sand: {summary(request)} is waiting for"
        f" a second person's approval {where}. It expires at {when(request.expires_at)}."
    )
    return Reply(text=text, blocks=[section(text)])


def render_decision(decision: Decision) -> Reply:
    """The reply to the person who clicked: what their click did."""
    request = decision.request
    name = title(request)
    texts = {
        RequestStatus.PENDING: f":ballot_box_with_check: You approved {name}; it needs"
        f" {request.votes_missing:,} more approval{'s' if request.votes_missing != 1 else ''} from other"
        f" approvers before anything changes ({len(request.votes)} of {request.quorum}).",
        RequestStatus.APPLIED: f":white_check_mark: You approved {name}: {_label(request)}'s balance went from"
        f" {tokens(request.balance_before or 0)} to {tokens(request.balance_after or 0)}.",
        RequestStatus.REJECTED: f":x: You rejected {name} ({clip(escape(request.decision_reason or ''), MAX_REASON_SHOWN)}).",
        RequestStatus.CANCELLED: f":heavy_minus_sign: You cancelled {name}.",
        RequestStatus.EXPIRED: f":hourglass: {name} expired at {when(request.expires_at)}, so it can no longer be"
        " decided; nothing was changed.",
        RequestStatus.STALE: f":warning: {name} is stale: new ledger rows arrived for {_label(request)} since it was"
        " proposed, so nothing was changed. Press Recompute on the message for a fresh reconciliation.",
    }
    text = texts[decision.outcome]
    return Reply(text=text, blocks=[section(text)])


def render_requester_notice(request: ApprovalRequest) -> Reply:
    """The direct message that tells the requester how their request ended."""
    text = f"Your {summary(request)}: {outcome_line(request)}"
    return Reply(text=text, blocks=[section(text)])


def request_value(request: ApprovalRequest) -> str:
    return RequestButton(r=request.id).encode()


def _recompute_value(request: ApprovalRequest) -> str:
    grant = request.correction.explicit_initial_grant if request.correction else None
    return Recompute(u=str(request.user.user_id), g=grant).encode()


def _decision_buttons(request: ApprovalRequest) -> list[ButtonElement]:
    value = request_value(request)
    approve = ConfirmObject(
        title="Approve?",
        text=clip(f"{_change(request)} for {_label(request)} will be applied now.", MAX_CONFIRM_TEXT),
        confirm="Approve",
        deny="Back",
    )
    return [
        button("Approve", APPROVE_ACTION, value, "primary", approve),
        # Reject opens a form asking why (bot.forms): a rejection always records its reason.
        button("Reject…", REJECT_ACTION, value, "danger"),
        button("Cancel request", CANCEL_ACTION, value),
    ]


def _facts(request: ApprovalRequest) -> SectionBlock:
    asked = [
        f"*Requested by*\n{who(request.requester)} at {when(request.requested_at)}",
        f"*Expires*\n{when(request.expires_at)}",
    ]
    if request.fix is not None:
        fields = [f"*User*\n{_label(request)}", *fix_fields(request.fix), *asked]
        return SectionBlock(fields=[MarkdownTextObject(text=clip(f, MAX_FIELD_TEXT)) for f in fields])
    fields = [
        f"*User*\n{_label(request)}",
        f"*Current balance*\n{tokens(request.remaining_at_request)}",
        f"*Change*\n{_change(request)}",
        f"*Resulting balance*\n{tokens(request.resulting_balance)}",
        *asked,
    ]
    correction = request.correction
    if correction is not None:
        fields.append(
            f"*Used*\n{tokens(correction.before_used)} → {tokens(correction.used)}"
            f"\n*Cost*\n{money(correction.before_cost, correction.cost_unit)} → {money(correction.cost, correction.cost_unit)}"
        )
    return SectionBlock(fields=[MarkdownTextObject(text=clip(f, MAX_FIELD_TEXT)) for f in fields])


def _change(request: ApprovalRequest) -> str:
    if request.fix is not None:
        return fix_change(request.fix)
    if request.correction is not None:
        return f"remaining {signed(request.correction.remaining - request.correction.before_remaining)}"
    assert request.delta is not None
    return f"{signed(request.delta)} tokens"


def _state(request: ApprovalRequest) -> str:
    return "waiting for approval" if request.status is RequestStatus.PENDING else request.status.value
