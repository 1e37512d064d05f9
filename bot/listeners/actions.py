"""Buttons on tokens-bot's messages."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.handlers import ACTION_HANDLERS, reply_to_action
from core.service import TokensService


def register(app: App, service: TokensService) -> None:
    def button_callback(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = reply_to_action(service, body["user"]["id"], action["action_id"], action.get("value") or "")
        respond(replace_original=True, **reply.as_kwargs())

    ids = "|".join(re.escape(action_id) for action_id in ACTION_HANDLERS)
    app.action(re.compile(f"^({ids})$"))(button_callback)
