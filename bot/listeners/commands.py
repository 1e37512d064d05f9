"""The `/tokens` slash command."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.forms import form_for_command
from bot.listeners._progress import reply_later, respond_in_time
from bot.listeners.context import REPLIES, SERVICE
from bot.render.modals import render_modal
from bot.routes import reply_to_command
from bot.slack.port import WebSlack
from core.services.service import TokensService

SLASH_COMMAND = "/tokens"


def tokens_command_callback(
    ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext
) -> None:
    """Ack now; the reply is computed and sent on a reply thread.

    A command that is a form (`/tokens adjust` alone, by an admin) opens it now, before any database
    work, while Slack's trigger_id is valid; if Slack refuses it, the command is answered as typed.
    """
    ack()
    service: TokensService = context[SERVICE]
    slack = WebSlack(client, service.settings)
    actor, text = command["user_id"], command.get("text") or ""
    form = form_for_command(service.settings, actor, text)
    if form is not None and slack.open_view(str(command.get("trigger_id") or ""), render_modal(form)):
        return
    route = partial(reply_to_command, service, actor, text, slack=slack)
    reply_later(context[REPLIES], respond, partial(respond_in_time, respond, route, in_place=False))
