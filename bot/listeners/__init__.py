"""Bolt listeners: module-level callbacks that ack first, then hand Slack-free inputs to bot.routes.

The service and the reply threads reach them through Bolt's context, put there by one middleware.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Executor

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from bot.forms import ADJUST_FORM, FORM_ACTIONS, REJECT_FORM
from bot.listeners.actions import button_callback
from bot.listeners.commands import SLASH_COMMAND, tokens_command_callback
from bot.listeners.context import REPLIES, SERVICE
from bot.listeners.home import home_opened_callback
from bot.listeners.views import form_submission_callback
from bot.routes import ACTION_ROUTES
from core.services.service import TokensService


class _Provide(Middleware):
    """Middleware: every request's context carries the service and the executor replies run on."""

    def __init__(self, service: TokensService, replies: Executor) -> None:
        self.service = service
        self.replies = replies

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        req.context[SERVICE] = self.service
        req.context[REPLIES] = self.replies
        return next()


def register(app: App, service: TokensService, replies: Executor) -> None:
    """Every listener acks in the request's thread and computes its reply on `replies`."""
    app.use(_Provide(service, replies))
    app.command(SLASH_COMMAND)(tokens_command_callback)
    ids = "|".join(re.escape(action_id) for action_id in sorted({*ACTION_ROUTES, *FORM_ACTIONS}))
    app.action(re.compile(f"^({ids})$"))(button_callback)
    app.view(re.compile(f"^({ADJUST_FORM}|{REJECT_FORM})$"))(form_submission_callback)
    app.event("app_home_opened")(home_opened_callback)
