"""The bot's Home tab (`views.publish`): what waits for the person's vote, their own pending requests, the
fleet in numbers as last stored, and the latest decisions; for anyone not allowed to view balances, only
how to get access."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.render.approvals import outcome_line, render_request, summary
from bot.render.common import JsonBlock, context, section, tokens
from core.domain.alerts import FleetSnapshot
from core.domain.approvals import ApprovalRequest, when
from core.domain.home import HomeReport

NO_ACCESS = (
    "tokens-bot shows AI-token balances, which are personal data, so this page is only for tokens-bot"
    " admins, approvers and viewers. Ask an admin to add your Slack ID to TOKENS_VIEWERS."
)


def render_home(report: HomeReport) -> dict[str, Any]:
    """The Home tab's view; each request shown as its approval message is, buttons included."""
    blocks: list[Block | JsonBlock] = [HeaderBlock(text="tokens-bot")]
    if not report.viewer:
        blocks.append(section(NO_ACCESS))
        return View(type="home", blocks=blocks).to_dict()
    blocks += _requests("Waiting for your vote", report.waiting, "Nothing waits for your vote.")
    blocks += _requests("Your pending requests", report.mine, "You have no pending requests.")
    if report.others_pending:
        blocks.append(context(f"{report.others_pending:,} more pending; `/tokens requests` lists them all."))
    blocks += [DividerBlock(), HeaderBlock(text="The fleet"), *_fleet(report.fleet)]
    blocks += [DividerBlock(), HeaderBlock(text="Latest decisions")]
    blocks += [context(f"{summary(r)}: {outcome_line(r)}") for r in report.decisions] or [
        context("No decisions yet.")
    ]
    return View(type="home", blocks=blocks).to_dict()


def _requests(heading: str, requests: tuple[ApprovalRequest, ...], empty: str) -> list[Block | JsonBlock]:
    blocks: list[Block | JsonBlock] = [DividerBlock(), section(f"*{heading}*")]
    if not requests:
        return [*blocks, context(empty)]
    for request in requests:
        blocks += render_request(request).blocks
    return blocks


def _fleet(fleet: FleetSnapshot | None) -> list[Block | JsonBlock]:
    if fleet is None:
        return [
            context(
                "No numbers yet: they come from `tokens-bot tick`'s fleet scans (with TOKENS_ALERTS_CHANNEL)"
                " or from the daily digest."
            )
        ]
    fields = [
        f"*Users*\n{tokens(fleet.users) if fleet.users is not None else 'not counted by the digest'}",
        f"*Negative balances*\n{tokens(fleet.negative)}",
        f"*Under {tokens(fleet.low_threshold)} tokens*\n{tokens(fleet.low_balances)}",
        f"*Discrepancies over {tokens(fleet.minimum)}*\n{tokens(fleet.discrepant)}",
    ]
    return [
        SectionBlock(fields=[MarkdownTextObject(text=f) for f in fields]),
        context(
            f"As of {when(fleet.scanned_at)}; `/tokens lowbalance` and `/tokens discrepancies` list them now."
        ),
    ]
