"""Fixes as people see them: the check's Fix section, the fix request's facts and rows, a batch's
progress and its verified summary, and the complete list of a batch's users as a CSV file.

An approver decides on what a fix writes, so the message names the side that is wrong, the values before
and after, and every ledger row it inserts (or, for a batch, the totals and the largest items, with the
complete list in a file in the thread).
"""

from __future__ import annotations

import csv
import io

from slack_sdk.models.blocks import Block

from bot.buttons import PROPOSE_FIX_ACTION, ProposeFix
from bot.render.common import (
    JsonBlock,
    Reply,
    button_json,
    clip,
    code_cell,
    context,
    escape,
    section,
    section_json,
    tokens,
)
from core.domain.check_report import CheckReport
from core.domain.fix_batches import BatchProgress, FixSummary, ItemReport
from core.domain.fix_plans import FixPlan, LedgerEntry
from core.domain.fixes import FixKind, FixOption, WrongSide

KIND_NAMES = {
    FixKind.PROFILE_CORRECTION: "profile correction",
    FixKind.LEDGER_REVERSAL: "ledger reversal",
    FixKind.LEDGER_BACKFILL: "ledger backfill",
    FixKind.ADJUSTMENT: "adjustment",
}
SIDE_NAMES = {
    WrongSide.PROFILE: "the profile (its cached balance)",
    WrongSide.LEDGER: "the ledger",
    WrongSide.ENTITLEMENT: "neither: a change of what the user has",
}
# A one-user fix names each row it inserts; past this many the rest are counted (a user with hundreds of
# duplicated rows still gets a message Slack accepts).
ENTRIES_SHOWN = 20
# What a problem line keeps of a reason the database gave.
MAX_OUTCOME_SHOWN = 200


def fix_section(report: CheckReport, *, can_ask: bool) -> list[JsonBlock]:
    """The check's Fix section: the recommended fix, the alternatives, and why the rest have none.

    Each fix is a section of its own so that an admin (who may ask for changes) gets its Propose fix
    button beside it, when the check saw a ledger position the proposal can be compared with.
    """
    if not report.fixes and not report.unfixable:
        return []
    snapshot = report.snapshot
    blocks: list[JsonBlock] = [section_json("*Fix*")]
    for option in report.fixes:
        block = section_json(_option_line(option))
        if can_ask and snapshot is not None:
            value = ProposeFix(
                u=str(report.user.user_id), c=option.cause, n=snapshot.rows, t=snapshot.last_at
            ).encode()
            style = {"style": "primary"} if option.recommended else {}
            label = f"Propose fix: {option.cause.value}"
            block["accessory"] = {**button_json(label, PROPOSE_FIX_ACTION, value), **style}
        blocks.append(block)
    if report.unfixable:
        lines = [f"• *No fix for `{u.cause.value}`*: {escape(u.why)}" for u in report.unfixable]
        blocks.append(section_json("\n".join(lines)))
    return blocks


def _option_line(option: FixOption) -> str:
    mark = ":star: *Recommended*" if option.recommended else "*Alternative*"
    return (
        f"• {mark} for `{option.cause.value}` — {KIND_NAMES[option.kind]}, wrong side:"
        f" {SIDE_NAMES[option.side]}. {escape(option.summary)}"
    )


def fix_change(fix: FixSummary) -> str:
    """A fix request's size in a few words: `ledger reversal of 10,128 tokens`."""
    return f"{KIND_NAMES[fix.kind]} of {tokens(fix.tokens)} tokens"


def fix_fields(fix: FixSummary) -> list[str]:
    """The approval message's facts about the fix: cause, kind, side, and what moves."""
    fields = [
        f"*Cause*\n`{fix.cause.value}`",
        f"*Fix*\n{KIND_NAMES[fix.kind]}",
        f"*Wrong side*\n{SIDE_NAMES[fix.side]}",
    ]
    if fix.plan is not None:
        before, after = fix.plan.before, fix.plan.after
        if before == after:
            fields.append(
                f"*Profile*\nnot touched: remaining {tokens(before.remaining)}, used {tokens(before.used)},"
                f" cost {before.cost}"
            )
        else:
            fields.append(
                f"*Profile*\nremaining {tokens(before.remaining)} → {tokens(after.remaining)}"
                f"\nused {tokens(before.used)} → {tokens(after.used)}\ncost {before.cost} → {after.cost}"
            )
    else:
        fields += [
            f"*Users*\n{tokens(fix.users)}, {tokens(fix.tokens)} tokens in all",
            f"*Balances*\n+{tokens(fix.remaining_up)} up · -{tokens(fix.remaining_down)} down",
            f"*Ledger rows to insert*\n{tokens(fix.ledger_rows)}",
        ]
    return fields


def fix_rows(fix: FixSummary) -> list[Block]:
    """Which rows the fix touches: each ledger row for one user, the largest items for a batch."""
    if fix.plan is not None:
        return [section(_plan_rows(fix.plan))]
    largest = "\n".join(f"• {escape(item.user.label)} — {tokens(item.tokens)} tokens" for item in fix.largest)
    return [
        section(f"*Largest items*\n{largest}"),
        context("The complete list of users is a CSV file in this message's thread."),
    ]


def _plan_rows(plan: FixPlan) -> str:
    if not plan.entries:
        return "*Ledger rows*\nNone: only the profile's values above are set; the ledger is not touched."
    lines = [_entry_line(e) for e in plan.entries[:ENTRIES_SHOWN]]
    more = len(plan.entries) - ENTRIES_SHOWN
    if more > 0:
        lines.append(f"…and {more:,} more")
    header = f"{'action':<24} {'model':<12} {'tokens':>12} {'cost':>10}  reverses row"
    return f"*Ledger rows it inserts* ({len(plan.entries):,})\n```" + "\n".join([header, *lines]) + "```"


def _entry_line(entry: LedgerEntry) -> str:
    cost = "-" if entry.cost is None else str(entry.cost)
    reverses = code_cell(entry.reverses) if entry.reverses else "- (backfill)"
    return (
        f"{code_cell(entry.action or '-', 24)} {code_cell(entry.model or '-', 12)}"
        f" {entry.tokens:>+12,} {cost:>10}  {reverses}"
    )


def progress_line(progress: BatchProgress) -> str:
    """`Applying: 1,200 of 3,000 — 1,195 applied, 5 skipped as stale, 0 failed`."""
    done = progress.total - progress.pending
    return (
        f":gear: Applying: {tokens(done)} of {tokens(progress.total)} — {tokens(progress.applied)} applied,"
        f" {tokens(progress.stale)} skipped as stale, {tokens(progress.failed)} failed"
    )


def summary_text(progress: BatchProgress) -> str:
    """The verified result: what was applied, skipped and failed, and what the ledger says now."""
    text = (
        f"*Result*: {tokens(progress.applied)} applied, {tokens(progress.stale)} skipped as stale,"
        f" {tokens(progress.failed)} failed, of {tokens(progress.total)}.\n"
        f"*Verification* against the ledger: {tokens(progress.reconciled)} now reconciled,"
        f" {tokens(progress.differing)} still differing for another reason,"
        f" {tokens(progress.unverified)} whose cause the check still finds."
    )
    if progress.problems:
        text += "\n" + "\n".join(_problem_line(item) for item in progress.problems)
        shown = progress.stale + progress.failed + progress.differing + progress.unverified
        if shown > len(progress.problems):
            text += f"\n…and {shown - len(progress.problems):,} more in the list file."
    return text


def _problem_line(item: ItemReport) -> str:
    why = item.verification if item.outcome is None else item.outcome
    return f"• {escape(item.user.label)} — {item.state.value}: {clip(escape(why or ''), MAX_OUTCOME_SHOWN)}"


def failed_verification(progress: BatchProgress) -> str | None:
    """The loud line for fixes that did not do what they promised; None when every one did."""
    if not progress.unverified:
        return None
    return (
        f":rotating_light: *Verification failed* for {tokens(progress.unverified)} user(s): the check still"
        " finds the cause this fix was meant to close. Open their checks before anything else."
    )


def outcome_blocks(progress: BatchProgress | None) -> list[Block]:
    """Under an approved fix's outcome line: progress while applying, the summary once verified."""
    if progress is None:
        return []
    if not progress.done or not progress.verified:
        return [context(progress_line(progress))]
    loud = failed_verification(progress)
    blocks: list[Block] = [section(loud)] if loud else []
    return [*blocks, section(summary_text(progress))]


def render_verification(title: str, progress: BatchProgress) -> Reply:
    """The thread reply once a fix is verified: the summary, led by the warning when there is one."""
    loud = failed_verification(progress)
    text = f"{title}: verified.\n{summary_text(progress)}"
    if loud:
        text = f"{loud}\n{text}"
    return Reply(text=clip(text, 3000), blocks=[section(text)])


def items_csv(items: list[ItemReport]) -> bytes:
    """The complete list of a fix's users: what approvers read before deciding, and what happened after."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "user_id",
            "email",
            "tokens",
            "remaining_before",
            "remaining_after",
            "used_before",
            "used_after",
            "ledger_rows",
            "state",
            "outcome",
            "verification",
        ]
    )
    for item in items:
        before, after = item.before, item.after
        writer.writerow(
            [
                _cell(item.user.user_id),
                _cell(item.user.email or ""),
                item.tokens,
                *(
                    ["", "", "", ""]
                    if before is None or after is None
                    else [before.remaining, after.remaining, before.used, after.used]
                ),
                _cell("; ".join(_entry_text(entry) for entry in item.entries)),
                item.state.value,
                _cell(item.outcome or ""),
                _cell(item.verification or ""),
            ]
        )
    return out.getvalue().encode()


def _entry_text(entry: LedgerEntry) -> str:
    """One planned ledger row in a cell: action type, signed tokens, and the row it reverses."""
    reverses = f" reversing {entry.reverses}" if entry.reverses else ""
    return f"{entry.action or '(no action type)'} {entry.tokens:+,}{reverses}"


def _cell(text: str) -> str:
    """Text from the product's database, kept from being read as a formula by a spreadsheet."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
