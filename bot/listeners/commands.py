"""The `/tokens` slash command."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.listeners._progress import reply_later, respond_in_time
from bot.listeners.context import REPLIES, SERVICE
from bot.routes import reply_to_command
from bot.slack.port import WebSlack
from core.services.service import TokensService

SLASH_COMMAND = "/tokens"


def tokens_command_callback(
    ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext
) -> None:
    """Ack now; the reply is computed and sent on a reply thread."""
    ack()
    service: TokensService = context[SERVICE]
    route = partial(
        reply_to_command,
        service,
        command["user_id"],
        command.get("text") or "",
        slack=WebSlack(client, service.settings),
    )
    reply_later(context[REPLIES], respond, partial(respond_in_time, respond, route, in_place=False))
