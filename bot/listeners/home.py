"""The bot's Home tab: published for each person when they open it, and again after they click in it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.listeners.context import REPLIES, SERVICE
from bot.render.home import render_home
from bot.slack.port import WebSlack
from core.services.service import TokensService

log = logging.getLogger(__name__)


def home_opened_callback(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Bolt acks the event; the Home tab is read (stored state only) and published on a reply thread."""
    if event.get("tab") != "home" or not isinstance(event.get("user"), str):
        return
    service: TokensService = context[SERVICE]
    context[REPLIES].submit(publish_home, service, WebSlack(client, service.settings), event["user"])


def publish_home(service: TokensService, slack: WebSlack, user: str) -> None:
    """Best-effort: a Home tab that could not be refreshed shows its last content, and the log says why."""
    try:
        slack.publish_home(user, render_home(service.home(user)))
    except Exception:
        log.exception("publishing the Home tab failed")
