"""`/tokens reconcile`: the guide's Step 4 for one user, with the correction an admin may propose."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.buttons import PROPOSE_ACTION, ProposeCorrection
from bot.render.common import (
    MAX_HEADER_TEXT,
    Reply,
    actions,
    button,
    code,
    context,
    escape,
    money,
    section,
    signed,
    tokens,
)
from core.domain.approvals import ReconcileReport

# After a reset the formula counts from the reset: its usage is the usage since then, not the lifetime total.
_SINCE_RESET = " since the reset"


def render_reconcile(report: ReconcileReport) -> Reply:
    """The guide's Step 4: current against ledger-derived values, with a correction to propose."""
    b = report.balance
    header = (
        ":white_check_mark: Matches the ledger"
        if not report.needs_correction
        else ":wrench: Differs from the ledger"
    )
    blocks: list[Block] = [
        # A header is plain_text, shown as typed: the label needs no escaping there.
        HeaderBlock(text=f"{header}: {report.user.label}"[:MAX_HEADER_TEXT]),
        context(
            f"User `{code(str(report.user.user_id))}` · initial grant: {escape(b.initial_grant.description)}"
        ),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=t)
                for t in (
                    f"*Remaining*\ncurrent {tokens(b.current_remaining)} · expected {tokens(b.expected_remaining)}"
                    f"\ndiscrepancy *{signed(b.remaining_discrepancy)}*",
                    f"*Used*\ncurrent {tokens(b.current_used)} · ledger {tokens(b.calculated_used)}"
                    f"\ndiscrepancy *{signed(b.used_discrepancy)}*",
                    f"*Cost*\ncurrent {money(b.current_cost, b.cost_unit)} · ledger {money(b.calculated_cost, b.cost_unit)}",
                    f"*Formula*\n{tokens(b.initial_grant.tokens)} + {tokens(b.admin_grants)} grants"
                    f" − {tokens(b.counted_used)} used{_SINCE_RESET if b.used_since_reset is not None else ''}"
                    f" − {tokens(b.admin_deductions)} deductions",
                )
            ]
        ),
    ]
    if report.needs_correction:
        blocks.append(
            section(
                f"A correction would set remaining to *{tokens(b.expected_remaining)}*, used to"
                f" *{tokens(b.calculated_used)}* and cost to *{money(b.calculated_cost, b.cost_unit)}*, writing no ledger row."
                " It needs a second person's approval."
            )
        )
        blocks.append(actions(button("Propose correction", PROPOSE_ACTION, propose_value(report), "primary")))
    text = f"{escape(report.user.label)}: remaining {tokens(b.current_remaining)}, expected {tokens(b.expected_remaining)}"
    return Reply(text=text, blocks=blocks)


def propose_value(report: ReconcileReport) -> str:
    """What "Propose correction" carries: the user, the grant assumption and the ledger position seen."""
    snap = report.snapshot
    return ProposeCorrection(
        u=str(report.user.user_id), g=report.explicit_initial_grant, n=snap.rows, t=snap.last_at
    ).encode()
