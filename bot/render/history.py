"""`/tokens history`: a user's audit trail as Block Kit, one event per section, newest first, paged."""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from bot.buttons import HISTORY_PAGE_ACTION, HistoryPage
from bot.render.approvals import MAX_REASON_SHOWN, who
from bot.render.common import (
    JsonBlock,
    Reply,
    clip,
    code,
    context_json,
    escape,
    header_json,
    money,
    page_buttons,
    section_json,
    signed,
    tokens,
)
from core.domain.approvals import SYSTEM, RequestKind, when
from core.domain.history import HistoryEntry, HistoryEvent, HistoryReport

__all__ = ["HISTORY_PAGE_ACTION"]

_MARKS = {
    HistoryEvent.REQUESTED: ":hourglass_flowing_sand:",
    HistoryEvent.VOTED: ":ballot_box_with_check:",
    HistoryEvent.APPLIED: ":white_check_mark:",
    HistoryEvent.CORRECTED: ":wrench:",
    HistoryEvent.REJECTED: ":x:",
    HistoryEvent.CANCELLED: ":heavy_minus_sign:",
    HistoryEvent.EXPIRED: ":hourglass:",
    HistoryEvent.STALE: ":warning:",
    HistoryEvent.APPLYING: ":gear:",
    HistoryEvent.FIX_APPLIED: ":wrench:",
}
# What an event that changed nothing says in place of a balance.
_UNCHANGED = {
    HistoryEvent.VOTED: "an approval short of the quorum; nothing was changed yet",
    HistoryEvent.REJECTED: "nothing was changed",
    HistoryEvent.CANCELLED: "withdrawn by the requester; nothing was changed",
    HistoryEvent.EXPIRED: "expired without a decision; nothing was changed",
    HistoryEvent.STALE: "the ledger moved after the correction was proposed; nothing was changed",
    HistoryEvent.APPLYING: "approved; the fix is applied user by user after this",
    HistoryEvent.FIX_APPLIED: "the fix's rows were written for this user",
}


def render_history(report: HistoryReport) -> Reply:
    """The page's events, each with when, what, who, the change, the balance, the ledger row and the reason.

    Every text from people (names, reasons) or the database (the user's label, ledger row ids) is escaped.
    """
    label = escape(report.user.label)
    if not report.entries:
        text = (
            f"Nothing recorded yet for {label}: tokens-bot has made no requests, decisions, corrections or"
            " ledger entries for this user."
        )
        return Reply(text=text, blocks=[section_json(text)])
    page = report.page
    summary = (
        f"*{tokens(report.total)}* event{'' if report.total == 1 else 's'} on *{tokens(report.requests)}*"
        f" request{'' if report.requests == 1 else 's'}, newest first · page {page.number} of {page.count}"
        f" · user `{code(report.user.user_id)}`"
    )
    blocks: list[Block | JsonBlock] = [
        # A header is plain_text, shown as typed: the label needs no escaping there.
        header_json(f"History: {report.user.label}"),
        context_json(summary),
    ]
    blocks += [section_json(_entry(entry)) for entry in report.entries]
    user_id = report.user.user_id
    blocks += page_buttons(page, HISTORY_PAGE_ACTION, lambda p: HistoryPage(u=user_id, p=p).encode())
    return Reply(
        text=f"History of {label}: {report.total:,} events, page {page.number} of {page.count}", blocks=blocks
    )


def _entry(entry: HistoryEntry) -> str:
    lines = [
        f"{_MARKS[entry.event]} *{when(entry.at)}* · *{entry.event.value}* · request #{entry.request_id}"
        f" ({_change(entry)})",
        f"by {_actor(entry)}",
    ]
    outcome = _outcome(entry)
    if outcome:
        lines.append(outcome)
    if entry.ledger_row_id is not None:
        lines.append(f"ledger row `{code(entry.ledger_row_id)}`")
    if entry.reason:
        lines.append(f"reason: {clip(escape(entry.reason), MAX_REASON_SHOWN)}")
    return "\n".join(lines)


def _actor(entry: HistoryEntry) -> str:
    """The sweep that closes overdue requests is nobody's click: it is named as the bot itself."""
    if entry.actor.slack_id == SYSTEM.slack_id:
        return "tokens-bot (the expiry sweep)"
    return who(entry.actor)


def _change(entry: HistoryEntry) -> str:
    """The request's kind and size: a grant's or deduction's delta, a correction's remaining change."""
    correction = entry.correction
    if entry.kind is RequestKind.FIX:
        return "fix"
    if entry.kind is RequestKind.CORRECTION and correction is not None:
        return f"correction, remaining {signed(correction.remaining - correction.before_remaining)}"
    delta = entry.delta or 0
    return f"{'grant' if delta > 0 else 'deduction'} {signed(delta)} tokens"


def _outcome(entry: HistoryEntry) -> str | None:
    """What the event did to the balance, or that it changed nothing."""
    before, after = entry.balance_before, entry.balance_after
    if entry.event is HistoryEvent.REQUESTED and before is not None and after is not None:
        return f"balance {tokens(before)} when asked; {tokens(after)} if approved"
    if entry.event is HistoryEvent.CORRECTED and before is not None and after is not None:
        line = f"remaining {tokens(before)} → {tokens(after)}"
        c = entry.correction
        if c is not None:
            line += (
                f" · used {tokens(c.before_used)} → {tokens(c.used)}"
                f" · cost {money(c.before_cost, c.cost_unit)} → {money(c.cost, c.cost_unit)}"
            )
        return line
    if entry.event is HistoryEvent.APPLIED and before is not None and after is not None:
        return f"balance {tokens(before)} → {tokens(after)}"
    return _UNCHANGED.get(entry.event)
