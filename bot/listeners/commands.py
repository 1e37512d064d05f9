"""The `/tokens` slash command."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.handlers import reply_to_command
from core.service import TokensService

SLASH_COMMAND = "/tokens"


def register(app: App, service: TokensService) -> None:
    def tokens_command_callback(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = reply_to_command(service, command["user_id"], command.get("text") or "")
        respond(response_type="ephemeral", **reply.as_kwargs())

    app.command(SLASH_COMMAND)(tokens_command_callback)
