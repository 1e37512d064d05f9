"""Buttons on tokens-bot's messages."""

from __future__ import annotations

import re
from concurrent.futures import Executor
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.listeners._progress import reply_later, respond_in_time
from bot.routes import ACTION_HANDLERS, SLOW_ACTIONS, ActionReply, reply_to_action
from bot.slack.port import WebSlack
from core.services.service import TokensService


def register(app: App, service: TokensService, replies: Executor) -> None:
    def button_callback(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        reply_later(replies, respond, lambda: answer(body, action, respond, client))

    def answer(body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        def run() -> ActionReply:
            return reply_to_action(
                service,
                body["user"]["id"],
                action["action_id"],
                # A value that is not text is damaged like any other: bot.buttons says so.
                value if isinstance(value := action.get("value"), str) else "",
                slack=WebSlack(client, service.settings),
            )

        if action["action_id"] in SLOW_ACTIONS:
            respond_in_time(respond, run, in_place=True)
            return
        done = run()
        if done.replace_original:
            respond(replace_original=True, **done.reply.as_kwargs())
        else:
            respond(response_type="ephemeral", replace_original=False, **done.reply.as_kwargs())

    ids = "|".join(re.escape(action_id) for action_id in ACTION_HANDLERS)
    app.action(re.compile(f"^({ids})$"))(button_callback)
