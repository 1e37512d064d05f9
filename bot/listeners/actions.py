"""Buttons on tokens-bot's messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.forms import FORM_ACTIONS, form_for_action
from bot.listeners._progress import reply_later, respond_in_time
from bot.listeners.context import REPLIES, SERVICE
from bot.listeners.home import publish_home
from bot.render.common import Reply, escape, message, render_unexpected_error
from bot.render.modals import render_modal
from bot.routes import SLOW_ACTIONS, ActionReply, reply_to_action
from bot.slack.port import WebSlack
from core.domain.errors import TokensBotError
from core.services.service import TokensService

log = logging.getLogger(__name__)


def button_callback(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: WebClient,
    context: BoltContext,
) -> None:
    """Ack now; the button's answer is computed and sent on a reply thread.

    A button that opens a form (Reject…, Adjust…) opens it here, before anything touches the database:
    Slack's trigger_id is good for 3 seconds, and the reply threads may be busy with a scan.
    """
    ack()
    service: TokensService = context[SERVICE]
    slack = WebSlack(client, service.settings)
    if action["action_id"] in FORM_ACTIONS:
        open_form(slack, body, action, respond)
        return
    route = partial(
        reply_to_action,
        service,
        body["user"]["id"],
        action["action_id"],
        # A value that is not text is damaged like any other: bot.buttons says so.
        value if isinstance(value := action.get("value"), str) else "",
        slack=slack,
    )
    if _on_home_tab(body):
        context[REPLIES].submit(_answer_on_home, service, slack, body["user"]["id"], route)
    elif action["action_id"] in SLOW_ACTIONS:
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


def _on_home_tab(body: dict[str, Any]) -> bool:
    """A click in the Home tab: it has no response URL, so its answer goes to the clicker's DM."""
    container = body.get("container")
    return isinstance(container, dict) and container.get("type") == "view"


def _answer_on_home(
    service: TokensService, slack: WebSlack, actor: str, route: Callable[[], ActionReply]
) -> None:
    """The answer as a direct message, then the Home tab again: a decided request leaves its list."""
    try:
        slack.notify(actor, route().reply)
    except Exception as error:
        log.error("unhandled error in a listener", exc_info=error)
        slack.notify(actor, render_unexpected_error())
    publish_home(service, slack, actor)


def open_form(slack: WebSlack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
    """The button's form as a modal; a damaged button, or Slack refusing the modal, is told to the clicker
    (in the channel where they clicked, or as a direct message from the Home tab)."""
    value = action.get("value")
    try:
        form = form_for_action(action["action_id"], value if isinstance(value, str) else "")
    except TokensBotError as exc:
        _tell(slack, body, respond, message(escape(str(exc))))
        return
    if not slack.open_view(str(body.get("trigger_id") or ""), render_modal(form)):
        _tell(slack, body, respond, message("Slack did not open the form; please click again."))


def _tell(slack: WebSlack, body: dict[str, Any], respond: Respond, reply: Reply) -> None:
    if _on_home_tab(body):
        slack.notify(body["user"]["id"], reply)
    else:
        respond(response_type="ephemeral", replace_original=False, **reply.as_kwargs())
