"""Building the Bolt app: one place wires settings, the database and the listeners."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot import listeners
from bot.render.common import render_unexpected_error
from core.service import TokensService

log = logging.getLogger(__name__)


def build_app(service: TokensService, *, socket_mode: bool = False) -> App:
    """A Bolt app whose Web API calls go to SLACK_API_URL (Slack's, or a test's loopback fake).

    Over HTTP every request's signature is verified, always: there is no setting to turn it off.
    Socket Mode has no signatures; the app token authenticates the connection instead.
    """
    settings = service.settings
    app = App(
        client=WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url),
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=not socket_mode,
        # No auth.test round trip at start: every gunicorn worker would make one.
        token_verification_enabled=False,
    )
    listeners.register(app, service)

    @app.error
    def tell_the_user(error: Exception, body: dict[str, Any], respond: Any) -> BoltResponse | None:
        log.error("unhandled error in a listener", exc_info=error)
        if body.get("response_url"):
            respond(response_type="ephemeral", **render_unexpected_error().as_kwargs())
        return None

    return app
