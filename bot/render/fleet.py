"""The fleet lists (`lowbalance`, `discrepancies`, `top`) and the daily digest as Block Kit messages."""

from __future__ import annotations

from uuid import UUID

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.buttons import (
    DISCREPANCIES_PAGE_ACTION,
    LOWBALANCE_PAGE_ACTION,
    OPEN_CHECK_ACTION,
    PROPOSE_BATCH_ACTION,
    TOP_PAGE_ACTION,
    CheckPage,
    DiscrepanciesPage,
    LowBalancePage,
    ProposeBatch,
    TopPage,
)
from bot.render.check import FINDING_TITLES
from bot.render.common import (
    MAX_SECTION_TEXT,
    Reply,
    button,
    clip,
    context,
    escape,
    money,
    page_buttons,
    section,
    signed,
    tokens,
)
from bot.render.fixes import KIND_NAMES, SIDE_NAMES
from core.domain.approvals import when
from core.domain.models import UserRef
from core.domain.reports import (
    CauseGroup,
    DigestReport,
    DiscrepancyReport,
    DiscrepancyRow,
    LowBalanceReport,
    LowBalanceRow,
    TopReport,
)
from core.domain.rollups import LedgerRead

__all__ = ["DISCREPANCIES_PAGE_ACTION", "LOWBALANCE_PAGE_ACTION", "OPEN_CHECK_ACTION", "TOP_PAGE_ACTION"]


def open_check_value(user_id: UUID | str) -> str:
    """What a row's Check button carries: the check handler's own page value, for page 1."""
    return CheckPage(u=str(user_id), p=1).encode()


def _row(text: str, user: UserRef) -> SectionBlock:
    """A list row with its Check button; `text` is mrkdwn whose data is already escaped."""
    return SectionBlock(
        text=MarkdownTextObject(text=clip(text, MAX_SECTION_TEXT)),
        accessory=button("Check", OPEN_CHECK_ACTION, open_check_value(user.user_id)),
    )


def _matched(count: int, noun: str = "user") -> str:
    return f"*{tokens(count)}* {noun}{'' if count == 1 else 's'}"


def _forecast(row: LowBalanceRow) -> str:
    days = row.days_to_zero
    if row.remaining <= 0:
        return "already out"
    if days is None:
        return "no recent usage"
    return f"~{days} days to zero"


def _low_line(position: int, row: LowBalanceRow) -> str:
    mark = ":red_circle: *NEGATIVE* " if row.remaining < 0 else ""
    remaining = "*not set* (read as 0)" if row.remaining_unset else f"*{tokens(row.remaining)}*"
    return (
        f"*{position}.* {mark}{escape(row.user.label)}\n"
        f"remaining {remaining} · used {tokens(row.used)}"
        f" · burn {tokens(row.burn_per_day)}/day · {_forecast(row)}"
    )


def render_lowbalance(report: LowBalanceReport) -> Reply:
    summary = (
        f"{_matched(report.total)} under {tokens(report.threshold)} tokens"
        f" ({tokens(report.negative)} negative) · page {report.page.number} of {report.page.count}"
        f" · burn rate from successful usage over the last {report.burn_window_days} days"
    )
    blocks: list[Block] = [
        HeaderBlock(text=f"Low balances: under {tokens(report.threshold)} tokens"),
        context(summary),
    ]
    if not report.rows:
        blocks.append(section(f"No user has fewer than {tokens(report.threshold)} tokens."))
    blocks += [_row(_low_line(report.offset + i + 1, row), row.user) for i, row in enumerate(report.rows)]
    blocks += page_buttons(
        report.page, LOWBALANCE_PAGE_ACTION, lambda p: LowBalancePage(t=report.threshold, p=p).encode()
    )
    return Reply(
        text=f"Low balances: {report.total:,} users under {report.threshold:,} tokens", blocks=blocks
    )


def _full_ledger(ledger: LedgerRead) -> str:
    """Said where the scan could not use the folded totals, which is why it was slow."""
    return f" · read the full ledger: {ledger.full_reason}" if ledger.full_reason else ""


def _causes(row: DiscrepancyRow) -> str:
    if not row.findings:
        return "no likely cause found in the ledger; open the check"
    return ", ".join(f"{FINDING_TITLES[f.kind]} ({tokens(f.tokens)})" for f in row.findings)


def _discrepancy_line(position: int, row: DiscrepancyRow) -> str:
    b = row.balance
    return (
        f"*{position}.* {escape(row.user.label)}\n"
        f"used *{signed(b.used_discrepancy)}* · remaining *{signed(b.remaining_discrepancy)}*"
        f" · cost {money(b.cost_discrepancy, b.cost_unit)}\n"
        f"likely cause: {_causes(row)}"
    )


def _cause_group(group: CauseGroup, minimum: int, *, can_ask: bool) -> SectionBlock:
    """One cause's line; an admin gets its "Propose fix for all" when the fix closes some of its users."""
    text = f"`{group.cause.value}` — {_matched(group.users)}, {tokens(group.tokens)} tokens"
    if group.fixable and group.fix is not None and group.side is not None:
        text += (
            f" · {tokens(group.fixable)} fixable by {KIND_NAMES[group.fix]}"
            f" (wrong side: {SIDE_NAMES[group.side]})"
        )
    else:
        text += " · no fix the bot can apply; open their checks"
    if not (can_ask and group.fixable):
        return section(text)
    label = f"Propose fix for all {group.fixable:,} user{'' if group.fixable == 1 else 's'}"
    value = ProposeBatch(c=group.cause, m=minimum).encode()
    return SectionBlock(
        text=MarkdownTextObject(text=clip(text, MAX_SECTION_TEXT)),
        accessory=button(label, PROPOSE_BATCH_ACTION, value),
    )


def render_discrepancies(report: DiscrepancyReport, *, can_ask: bool = False) -> Reply:
    """The groups by cause (each with its batch fix for admins), then one page of users, largest first."""
    summary = (
        f"{_matched(report.total)} with a used or remaining discrepancy over {tokens(report.minimum)} tokens"
        + (f" whose cause is `{report.cause.value}`" if report.cause is not None else "")
        + f", largest first · page {report.page.number} of {report.page.count}"
    )
    if report.classified < report.discrepant:
        summary += (
            f" · causes and this list cover the {tokens(report.classified)} largest of"
            f" {_matched(report.discrepant)}; once they are fixed, the next ones come up"
        )
    if report.older_causes:
        summary += (
            f" · the causes of {_matched(report.older_causes)} are from their rows at the last fold of the ledger"
            " totals (they have rows since); every balance, and every user on this page, is current"
        )
    if report.deferred:
        summary += (
            f" · {_matched(report.deferred)} left out: active in the last {report.grace_seconds} s,"
            " their balance may still be being written"
        )
    summary += _full_ledger(report.ledger)
    blocks: list[Block] = [
        HeaderBlock(text=f"Discrepancies over {tokens(report.minimum)} tokens"),
        context(summary),
    ]
    if report.causes:
        blocks.append(section("*By cause*"))
        blocks += [_cause_group(g, report.minimum, can_ask=can_ask) for g in report.causes]
        blocks.append(DividerBlock())
    if not report.rows:
        blocks.append(
            section(f"No user's balance and ledger disagree by more than {tokens(report.minimum)}.")
        )
    blocks += [
        _row(_discrepancy_line(report.offset + i + 1, row), row.user) for i, row in enumerate(report.rows)
    ]
    blocks += page_buttons(
        report.page,
        DISCREPANCIES_PAGE_ACTION,
        lambda p: DiscrepanciesPage(m=report.minimum, p=p, c=report.cause).encode(),
    )
    return Reply(
        text=f"Discrepancies: {report.discrepant:,} users over {report.minimum:,} tokens", blocks=blocks
    )


def render_top(report: TopReport) -> Reply:
    shown = min(report.requested, report.users)
    blocks: list[Block] = [
        HeaderBlock(text=f"Top {tokens(shown)} by lifetime usage"),
        context(
            f"the {tokens(shown)} highest of {_matched(report.users)} · page {report.page.number}"
            f" of {report.page.count}"
        ),
    ]
    if not report.rows:
        blocks.append(section("There are no user profiles yet."))
    blocks += [
        _row(
            f"*{report.offset + i + 1}.* {escape(row.user.label)}\n"
            f"used *{tokens(row.used)}* · cost {money(row.cost, report.cost_unit, rounded=True)}"
            f" · remaining {tokens(row.remaining)}",
            row.user,
        )
        for i, row in enumerate(report.rows)
    ]
    blocks += page_buttons(report.page, TOP_PAGE_ACTION, lambda p: TopPage(n=report.requested, p=p).encode())
    return Reply(text=f"Top {shown:,} users by lifetime usage", blocks=blocks)


def render_digest(report: DigestReport) -> Reply:
    """One channel message: totals, the lowest balances, and what drifted since the previous digest."""
    t = report.totals
    since = (
        f"changes since the previous digest of {when(report.previous_at)}"
        if report.previous_at
        else "the first digest in this channel, so every discrepancy is new"
    )
    blocks: list[Block] = [
        HeaderBlock(text="tokens-bot daily digest"),
        context(f"{when(report.generated_at)} · {since}"),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Users*\n{tokens(t.users)}"),
                MarkdownTextObject(text=f"*Tokens remaining*\n{tokens(t.remaining)}"),
                MarkdownTextObject(text=f"*Tokens used*\n{tokens(t.used)}"),
                MarkdownTextObject(text=f"*Cost*\n{money(t.cost, t.cost_unit, rounded=True)}"),
                MarkdownTextObject(text=f"*Negative balances*\n{tokens(t.negative)}"),
                *(
                    [MarkdownTextObject(text=f"*Balances not set*\n{tokens(t.unset)} (read as 0)")]
                    if t.unset
                    else []
                ),
            ]
        ),
        DividerBlock(),
        section(
            f"*Low balances*: {_matched(report.low.total)} under {tokens(report.low.threshold)} tokens"
            f" ({tokens(report.low.negative)} negative). Lowest:"
        ),
    ]
    blocks += [_row(_low_line(i + 1, row), row.user) for i, row in enumerate(report.low.rows[:5])]
    deferred = f", {tokens(report.deferred)} deferred (active in the last minutes)" if report.deferred else ""
    blocks += [
        DividerBlock(),
        section(
            f"*Discrepancies over {tokens(report.minimum)} tokens*: {_matched(report.discrepant)} —"
            f" *{tokens(report.new)} new*, {tokens(report.unresolved)} still unresolved,"
            f" {tokens(report.resolved)} resolved since last time{deferred}.{_full_ledger(report.ledger)}"
        ),
    ]
    for title, rows in (("New", report.new_rows), ("Still unresolved", report.unresolved_rows)):
        if rows:
            blocks.append(context(f"*{title}*, largest first"))
            blocks += [_row(_discrepancy_line(i + 1, row), row.user) for i, row in enumerate(rows)]
    blocks.append(context("`/tokens lowbalance` and `/tokens discrepancies` list everyone."))
    return Reply(
        text=(
            f"tokens-bot digest: {report.low.total:,} low balances, {report.discrepant:,} discrepancies"
            f" ({report.new:,} new)"
        ),
        blocks=blocks,
    )
