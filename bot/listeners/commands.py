"""The `/tokens` slash command."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.listeners._progress import reply_later, respond_in_time
from bot.routes import reply_to_command
from bot.slack.port import WebSlack
from core.services.service import TokensService

SLASH_COMMAND = "/tokens"


def register(app: App, service: TokensService, replies: Executor) -> None:
    def tokens_command_callback(
        ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        reply_later(
            replies,
            respond,
            lambda: respond_in_time(
                respond,
                lambda: reply_to_command(
                    service,
                    command["user_id"],
                    command.get("text") or "",
                    slack=WebSlack(client, service.settings),
                ),
                in_place=False,
            ),
        )

    app.command(SLASH_COMMAND)(tokens_command_callback)
