"""The tick's alerts as one message per tick, however many: counts per kind, a few users each, the rest
counted (the lists are a command away), so 3,000 crossings at once are one message, not a flood."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from slack_sdk.models.blocks import Block

from bot.render.common import Reply, code, context, escape, section, signed, tokens
from core.domain.alerts import Alert, AlertKind

# Users listed per group; Slack's 3,000-character section fits this many lines with room to spare.
LISTED = 15
_ORDER = {AlertKind.NEGATIVE: 0, AlertKind.LOW_BALANCE: 1, AlertKind.DISCREPANCY: 2}


def _title(kind: AlertKind, threshold: int, count: int, problem: int) -> str:
    users = f"{count:,} user{'s' if count != 1 else ''}"
    if kind is AlertKind.NEGATIVE:
        return f":red_circle: *Negative balance* — {users}"
    if kind is AlertKind.LOW_BALANCE:
        return f":large_orange_circle: *Balance under {tokens(threshold)}* — {users}"
    return f":mag: *New discrepancy above {tokens(problem)} tokens* — {users}"


def _line(alert: Alert) -> str:
    """The user by email where there is one (escaped: it is the product's data), and by id."""
    who = f"{escape(alert.email)} (`{code(alert.user_id)}`)" if alert.email else f"`{code(alert.user_id)}`"
    if alert.kind is AlertKind.DISCREPANCY:
        return f"• {who} — off by {tokens(alert.value)} tokens"
    return f"• {who} — balance {signed(alert.value)}"


def _more(kind: AlertKind, rest: int) -> str:
    command = "/tokens discrepancies" if kind is AlertKind.DISCREPANCY else "/tokens lowbalance"
    return f"…and {rest:,} more: `{command}` lists them all."


def render_alerts(alerts: Sequence[Alert], problem_threshold: int) -> Reply:
    """Groups by kind and threshold, worst first; each names at most LISTED users."""
    ordered = sorted(alerts, key=lambda a: (_ORDER[a.kind], a.threshold))
    blocks: list[Block] = []
    for (kind, threshold), group in groupby(ordered, key=lambda a: (a.kind, a.threshold)):
        members = list(group)
        lines = [_title(kind, threshold, len(members), problem_threshold)]
        lines += [_line(alert) for alert in members[:LISTED]]
        if len(members) > LISTED:
            lines.append(_more(kind, len(members) - LISTED))
        blocks.append(section("\n".join(lines)))
    blocks.append(
        context(
            "Each alert fires once per crossing, and again only after the user has recovered."
            " `/tokens check <user>` explains one."
        )
    )
    count = len(alerts)
    text = f":rotating_light: tokens-bot: {count:,} new alert{'s' if count != 1 else ''}"
    return Reply(text=text, blocks=[section(text), *blocks])
