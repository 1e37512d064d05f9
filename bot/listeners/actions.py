"""Buttons on tokens-bot's messages."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.listeners._progress import reply_later, respond_in_time
from bot.listeners.context import REPLIES, SERVICE
from bot.routes import SLOW_ACTIONS, ActionReply, reply_to_action
from bot.slack.port import WebSlack
from core.services.service import TokensService


def button_callback(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: WebClient,
    context: BoltContext,
) -> None:
    """Ack now; the button's answer is computed and sent on a reply thread."""
    ack()
    service: TokensService = context[SERVICE]
    route = partial(
        reply_to_action,
        service,
        body["user"]["id"],
        action["action_id"],
        # A value that is not text is damaged like any other: bot.buttons says so.
        value if isinstance(value := action.get("value"), str) else "",
        slack=WebSlack(client, service.settings),
    )
    if action["action_id"] in SLOW_ACTIONS:
        reply_later(context[REPLIES], respond, partial(respond_in_time, respond, route, in_place=True))
    else:
        reply_later(context[REPLIES], respond, partial(_answer, respond, route))


def _answer(respond: Respond, route: Callable[[], ActionReply]) -> None:
    """A quick button's answer, in place of its message or to the clicker alone, as the route decided."""
    done = route()
    if done.replace_original:
        respond(replace_original=True, **done.reply.as_kwargs())
    else:
        respond(response_type="ephemeral", replace_original=False, **done.reply.as_kwargs())
