"""`/tokens chart` and the check's Chart button: the service computes the chart, bot.render.charts draws
it, and it is uploaded to the asker's direct message with the bot, never to the channel asked from.

A chart shows one person's balance and usage, which is personal data: the channel a command is typed in
may be shared, and Slack files have no "only visible to you", so the picture goes where only the asker
reads it, and the reply (ephemeral) says where it went.
"""

from __future__ import annotations

import re
from uuid import UUID

from bot.buttons import ChartButton
from bot.command_models import ChartCommand
from bot.render.charts import usage_chart_png
from bot.render.common import Reply, escape, message
from bot.slack.port import SlackPort
from core.services.service import TokensService

# What may stand in a file name as Slack shows it: a product user id can be any text.
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def chart_command(service: TokensService, slack: SlackPort, actor: str, command: ChartCommand) -> Reply:
    return send_chart(service, slack, actor, command.user, command.days)


def chart_button(service: TokensService, slack: SlackPort, actor: str, value: ChartButton) -> Reply:
    return send_chart(service, slack, actor, value.u, value.d)


def send_chart(service: TokensService, slack: SlackPort, actor: str, user: UUID | str, days: int) -> Reply:
    """Compute (the core checks who may look and refuses users with nothing to draw), draw, then upload.

    The direct message is opened after the service answered, so a refusal touches no Slack at all.
    """
    chart = service.usage_chart(actor, user, days=days)
    png = usage_chart_png(chart)
    label = chart.user.label
    shown = len(chart.days) or days
    filename = f"tokens-{_UNSAFE_IN_NAME.sub('-', chart.user.user_id)[:64]}-{shown}d.png"
    title = f"Tokens of {label}, last {shown} days (UTC)"
    channel = slack.direct_channel(actor)
    if channel is None or not slack.upload(channel, filename, png, title):
        return message(
            f":warning: Slack did not take the chart of {escape(label)}, so nothing was sent; please try"
            " again in a moment."
        )
    return message(f"Sent the chart of {escape(label)} to you in a direct message.")
