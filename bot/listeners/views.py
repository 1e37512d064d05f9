"""Submitted forms (Slack modals): read and checked before the ack, so Slack shows errors on the fields."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.forms import FormErrors, read_form
from bot.listeners.context import REPLIES, SERVICE
from bot.render.common import escape, message, render_unexpected_error
from bot.render.modals import submitted_values
from bot.routes import reply_to_form
from bot.slack.port import WebSlack
from core.domain.errors import TokensBotError
from core.services.service import TokensService

log = logging.getLogger(__name__)


def form_submission_callback(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Answers that do not read keep the modal open with a message on each wrong field; otherwise the modal
    closes and the command runs on a reply thread. A submission has no response URL: its answer (the
    request made, or why not) reaches the person as a direct message from the bot."""
    service: TokensService = context[SERVICE]
    actor = str(body["user"]["id"])
    slack = WebSlack(client, service.settings)
    try:
        command = read_form(
            str(view.get("callback_id")), str(view.get("private_metadata") or ""), submitted_values(view)
        )
    except FormErrors as exc:
        ack(response_action="errors", errors=exc.errors)
        return
    except TokensBotError as exc:
        ack()
        slack.notify(actor, message(escape(str(exc))))
        return
    ack()

    def run() -> None:
        try:
            slack.notify(actor, reply_to_form(service, actor, command, slack=slack))
        except Exception as error:
            log.error("unhandled error in a listener", exc_info=error)
            slack.notify(actor, render_unexpected_error())

    context[REPLIES].submit(run)
