"""The `/tokens check` reply: verdict, discrepancies, findings, breakdown and a page of operations."""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from bot.buttons import (
    ADJUST_ACTION,
    CHART_ACTION,
    CHECK_PAGE_ACTION,
    PROPOSE_FIX_ACTION,
    AdjustButton,
    ChartButton,
    CheckPage,
)
from bot.command_models import CHART_DAYS_DEFAULT
from bot.render.common import (
    DIVIDER,
    JsonBlock,
    Reply,
    button_json,
    code,
    code_cell,
    context_json,
    dollars_to_the_cent,
    escape,
    fields_json,
    header_json,
    money,
    section_json,
    signed,
    tokens,
)
from bot.render.fixes import fix_section
from core.domain.check_report import CheckReport
from core.domain.models import FindingKind, Operation, Verdict

__all__ = [
    "CHART_ACTION",
    "CHECK_PAGE_ACTION",
    "FINDING_TITLES",
    "PROPOSE_FIX_ACTION",
    "check_page_value",
    "render_check",
]

_VERDICT_TITLE = {
    Verdict.RECONCILED: ":white_check_mark: Reconciled",
    Verdict.MINOR: ":large_yellow_circle: Minor drift",
    Verdict.PROBLEM: ":red_circle: Problem",
}
FINDING_TITLES = {
    FindingKind.FAILED_CHARGED: "Failed operations charged",
    FindingKind.DUPLICATES: "Likely duplicate entries",
    FindingKind.USAGE_NOT_CHARGED: "Usage never subtracted",
    FindingKind.DUPLICATE_GRANT: "Grant logged twice",
    FindingKind.UNLOGGED_GRANT: "Grant never logged",
    FindingKind.USAGE_BEFORE_TRACKING: "Usage before tracking",
    FindingKind.COST_DRIFT: "Cost no longer matches prices",
    FindingKind.NEGATIVE_BALANCE: "Negative balance",
}


def check_page_value(report: CheckReport, page: int) -> str:
    """What a paging button carries: enough to recompute that page, nothing personal beyond the id."""
    return CheckPage(u=str(report.user.user_id), p=page, g=report.explicit_initial_grant).encode()


def render_check(report: CheckReport, *, can_ask: bool = False) -> Reply:
    """The check reply, its blocks built as JSON: it is rendered on every check (see common.JsonBlock).

    `can_ask` (the asker is an admin) adds the Adjust… button and a Propose fix button to each fix
    offered; viewers never see them.

    Every text from the database (email, id, action and model names, errors) is escaped where it is
    interpolated; inside the code tables it also loses its backticks, so it cannot close them.
    """
    blocks: list[Block | JsonBlock] = [
        # A header is plain_text: Slack shows it as typed, so the label needs no escaping there.
        header_json(f"{_VERDICT_TITLE[report.verdict]}: {report.user.label}"),
        context_json(
            f"User `{code(str(report.user.user_id))}` · initial grant:"
            f" {escape(report.balance.initial_grant.description)}"
            + (f" · profile {escape(report.user.profile)}" if report.user.profile else "")
        ),
        _discrepancies(report),
        DIVIDER,
        section_json(_findings(report)),
        *fix_section(report, can_ask=can_ask),
        *([section_json(_data_quality(report))] if report.data_quality else []),
        section_json(_breakdown(report)),
        section_json(_operations(report)),
    ]
    blocks.append(_buttons(report, can_ask=can_ask))
    return Reply(text=_fallback(report), blocks=blocks)


def _buttons(report: CheckReport, *, can_ask: bool) -> JsonBlock:
    """One row: Previous and Next where there is such a page, Chart (sent to the clicker's DM), and for
    admins Adjust… (the adjust form, the user filled in)."""
    page = report.page
    row = []
    if page.has_previous:
        row.append(
            button_json(":arrow_left: Previous", CHECK_PAGE_ACTION, check_page_value(report, page.number - 1))
        )
    if page.has_next:
        row.append(
            button_json("Next :arrow_right:", CHECK_PAGE_ACTION, check_page_value(report, page.number + 1))
        )
    chart = ChartButton(u=str(report.user.user_id), d=CHART_DAYS_DEFAULT).encode()
    row.append(button_json(":bar_chart: Chart", CHART_ACTION, chart))
    if can_ask:
        user = AdjustButton(u=report.user.label).encode()
        row.append(button_json(":pencil2: Adjust…", ADJUST_ACTION, user))
    return {"type": "actions", "elements": row}


def _discrepancies(report: CheckReport) -> JsonBlock:
    b = report.balance

    def profile(name: str, shown: str) -> str:
        """A NULL balance column is read as 0, and says so."""
        return f"not set (read as {shown})" if name in b.unset else shown

    fields = [
        f"*Used*\nprofile {profile('used', tokens(b.current_used))} · ledger {tokens(b.calculated_used)}\n"
        f"discrepancy *{signed(b.used_discrepancy)}*",
        f"*Remaining*\nprofile {profile('remaining', tokens(b.current_remaining))}"
        f" · expected {tokens(b.expected_remaining)}\n"
        f"discrepancy *{signed(b.remaining_discrepancy)}*",
        f"*Cost*\nprofile {profile('cost', money(b.current_cost, b.cost_unit))}"
        f" · ledger {money(b.calculated_cost, b.cost_unit)}\n"
        f"discrepancy *{money(b.cost_discrepancy, b.cost_unit)}*",
        f"*Ledger*\n{tokens(b.ledger_rows)} rows, {tokens(b.failed_rows)} failed\n"
        f"grants +{tokens(b.admin_grants)} · deductions -{tokens(b.admin_deductions)}",
    ]
    return fields_json(fields)


def _findings(report: CheckReport) -> str:
    if not report.findings:
        if report.verdict is Verdict.RECONCILED:
            return "*Findings*\nNothing suspicious in the ledger."
        below = " See Data quality below." if report.data_quality else ""
        return f"*Findings*\nNo known cause in the ledger explains this discrepancy.{below}"
    lines = [
        f"• *{FINDING_TITLES[f.kind]}* — {tokens(f.tokens)} tokens. {escape(f.summary)}"
        for f in report.findings
    ]
    return "*Findings*\n" + "\n".join(lines)


def _data_quality(report: CheckReport) -> str:
    """Rows and values the bot had to interpret, each with the reading it applied."""
    lines = [f"• {escape(note.summary)}" for note in report.data_quality]
    return "*Data quality* (how odd values were read)\n" + "\n".join(lines)


def _breakdown(report: CheckReport) -> str:
    if not report.breakdown:
        return "*Usage by action and model*\nNo ledger rows."
    rows = [
        f"{code_cell(_shown(r.action_type), 28)} {code_cell(_shown(r.model_used), 12)}"
        f" {r.operations:>6,} {r.failed_operations:>5,} {r.tokens:>13,} {dollars_to_the_cent(r.cost):>10}"
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


_STATUS = {True: "ok  ", False: "FAIL", None: "?   "}


def _operation_line(op: Operation) -> str:
    """One ledger row; a column the product left NULL shows as `-` (a NULL success as `?`)."""
    at = f"{op.created_at:%Y-%m-%d %H:%M:%S}" if op.created_at else f"{'-':<19}"
    used = "-" if op.tokens_used is None else f"{op.tokens_used:,}"
    cost = "-" if op.cost_estimate is None else f"{op.cost_estimate}"
    line = (
        f"{at} {_STATUS[op.success]} {code_cell(_shown(op.action_type), 26)} {code_cell(_shown(op.model_used), 12)}"
        f" {used:>10} {cost:>9}¢"
    )
    if op.error_message:
        line += f"\n    ↳ {code_cell(op.error_message[:120])}"
    return line


def _shown(name: str | None) -> str:
    return "-" if name is None or name == "" else name


def _fallback(report: CheckReport) -> str:
    b = report.balance
    return (
        f"{report.verdict.value.capitalize()}: {escape(report.user.label)} — used {signed(b.used_discrepancy)},"
        f" remaining {signed(b.remaining_discrepancy)}, cost {money(b.cost_discrepancy, b.cost_unit)};"
        f" {len(report.findings)} finding(s)"
    )
