"""The `/tokens check` reply: verdict, discrepancies, findings, breakdown and a page of operations."""

from __future__ import annotations

import json

from slack_sdk.models.blocks import Block

from bot.render.common import (
    DIVIDER,
    JsonBlock,
    Reply,
    context_json,
    dollars,
    dollars_to_the_cent,
    fields_json,
    header_json,
    page_buttons,
    section_json,
    signed,
    tokens,
)
from core.models import CheckReport, FindingKind, Operation, Verdict

CHECK_PAGE_ACTION = "check_page"

_VERDICT_TITLE = {
    Verdict.RECONCILED: ":white_check_mark: Reconciled",
    Verdict.MINOR: ":large_yellow_circle: Minor drift",
    Verdict.PROBLEM: ":red_circle: Problem",
}
FINDING_TITLES = {
    FindingKind.FAILED_CHARGED: "Failed operations charged",
    FindingKind.DUPLICATES: "Likely duplicate entries",
    FindingKind.UNLOGGED_GRANT: "Grant never logged",
    FindingKind.USAGE_BEFORE_TRACKING: "Usage before tracking",
    FindingKind.COST_DRIFT: "Cost no longer matches prices",
    FindingKind.NEGATIVE_BALANCE: "Negative balance",
}


def check_page_value(report: CheckReport, page: int) -> str:
    """What a paging button carries: enough to recompute that page, nothing personal beyond the id."""
    return json.dumps({"u": str(report.user.user_id), "p": page, "g": report.explicit_initial_grant})


def render_check(report: CheckReport) -> Reply:
    """The check reply, its blocks built as JSON: it is rendered on every check (see common.JsonBlock)."""
    blocks: list[Block | JsonBlock] = [
        header_json(f"{_VERDICT_TITLE[report.verdict]}: {report.user.label}"),
        context_json(
            f"User `{report.user.user_id}` · initial grant: {report.balance.initial_grant.description}"
        ),
        _discrepancies(report),
        DIVIDER,
        section_json(_findings(report)),
        section_json(_breakdown(report)),
        section_json(_operations(report)),
    ]
    blocks += page_buttons(report.page, CHECK_PAGE_ACTION, lambda number: check_page_value(report, number))
    return Reply(text=_fallback(report), blocks=blocks)


def _discrepancies(report: CheckReport) -> JsonBlock:
    b = report.balance
    fields = [
        f"*Used*\nprofile {tokens(b.current_used)} · ledger {tokens(b.calculated_used)}\n"
        f"discrepancy *{signed(b.used_discrepancy)}*",
        f"*Remaining*\nprofile {tokens(b.current_remaining)} · expected {tokens(b.expected_remaining)}\n"
        f"discrepancy *{signed(b.remaining_discrepancy)}*",
        f"*Cost*\nprofile {dollars(b.current_cost)} · ledger {dollars(b.calculated_cost)}\n"
        f"discrepancy *{dollars(b.cost_discrepancy)}*",
        f"*Ledger*\n{tokens(b.ledger_rows)} rows, {tokens(b.failed_rows)} failed\n"
        f"grants +{tokens(b.admin_grants)} · deductions -{tokens(b.admin_deductions)}",
    ]
    return fields_json(fields)


def _findings(report: CheckReport) -> str:
    if not report.findings:
        return "*Findings*\nNothing suspicious in the ledger."
    lines = [
        f"• *{FINDING_TITLES[f.kind]}* — {tokens(f.tokens)} tokens. {f.summary}" for f in report.findings
    ]
    return "*Findings*\n" + "\n".join(lines)


def _breakdown(report: CheckReport) -> str:
    if not report.breakdown:
        return "*Usage by action and model*\nNo ledger rows."
    rows = [
        f"{r.action_type[:28]:<28} {(r.model_used or '-')[:12]:<12} {r.operations:>6,} {r.failed_operations:>5,}"
        f" {r.tokens:>13,} {dollars_to_the_cent(r.cost):>10}"
        for r in report.breakdown
    ]
    header = f"{'action':<28} {'model':<12} {'ops':>6} {'fail':>5} {'tokens':>13} {'cost':>10}"
    return "*Usage by action and model*\n```" + "\n".join([header, *rows]) + "```"


def _operations(report: CheckReport) -> str:
    title = (
        f"*Recent operations* (newest first, page {report.page.number} of {report.page.count};"
        f" {tokens(report.operations_total)} rows in the ledger)"
    )
    if not report.operations:
        return f"{title}\nNo operations recorded."
    return title + "\n```" + "\n".join(_operation_line(op) for op in report.operations) + "```"


def _operation_line(op: Operation) -> str:
    status = "ok  " if op.success else "FAIL"
    line = (
        f"{op.created_at:%Y-%m-%d %H:%M:%S} {status} {op.action_type[:26]:<26} {(op.model_used or '-')[:12]:<12}"
        f" {op.tokens_used:>10,} {op.cost_estimate:>9}¢"
    )
    if op.error_message:
        line += f"\n    ↳ {op.error_message[:120].replace('`', chr(39))}"
    return line


def _fallback(report: CheckReport) -> str:
    b = report.balance
    return (
        f"{report.verdict.value.capitalize()}: {report.user.label} — used {signed(b.used_discrepancy)},"
        f" remaining {signed(b.remaining_discrepancy)}, cost {dollars(b.cost_discrepancy)};"
        f" {len(report.findings)} finding(s)"
    )
