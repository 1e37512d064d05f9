"""Building the Bolt app: one place wires settings, the database and the listeners."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.error import BoltError
from slack_bolt.middleware import Middleware
from slack_sdk.errors import SlackClientError

from bot import listeners
from bot.render.common import render_unexpected_error
from bot.slack import delivery, guards
from bot.slack.delivery import web_client
from core.services.service import TokensService
from core.settings import Settings

log = logging.getLogger(__name__)


def build_app(
    service: TokensService, *, socket_mode: bool = False, executor: ThreadPoolExecutor | None = None
) -> App:
    """A Bolt app whose Web API calls go to SLACK_API_URL (Slack's, or a test's loopback fake).

    Over HTTP every request's signature is verified, always: there is no setting to turn it off, and a
    replayed signature is refused too. Socket Mode has no signatures; the app token authenticates the
    connection instead.

    Listeners run in the thread that received the request (`process_before_response`): they ack there
    and hand the reply's work to `executor` (TOKENS_REPLY_THREADS threads when not given). So an ack
    never waits for a free reply thread, and under a burst Slack gets every ack in time while the
    replies queue.
    """
    settings = service.settings
    app = _bolt_app(settings, socket_mode=socket_mode)
    app.use(_MarkVerified())
    guards.install(app, settings)
    delivery.install(app, settings)
    listeners.register(app, service, executor or ThreadPoolExecutor(settings.tokens_reply_threads))

    @app.error
    def tell_the_user(error: Exception, context: BoltContext, respond: Any) -> BoltResponse | None:
        """Log, and apologise to the user, but only on a request that proved it came from Slack.

        Bolt calls this for failures anywhere, its own signature check included, and builds `respond`
        from the body's response_url before verifying anything: answering an unverified request would
        POST to whatever URL its sender chose.
        """
        log.error("unhandled error in a listener", exc_info=error)
        if context.get(VERIFIED) and context.response_url:
            respond(response_type="ephemeral", **render_unexpected_error().as_kwargs())
        return None

    return app


# Set on a request's context once it is past Bolt's signature check (Socket Mode has none to pass).
VERIFIED = "tokens_bot_verified"


class _MarkVerified(Middleware):
    """The first of the app's middleware: Bolt runs it only after its own, signature check included.

    Like every middleware of the bot's, a `Middleware` rather than a plain function: Bolt calls a
    function through `build_required_kwargs`, which builds every argument a listener could ask for
    (payload views, `say`, `respond`…) on each request, for each function; `process` is called as is.
    """

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        req.context[VERIFIED] = True
        return next()


def _bolt_app(settings: Settings, *, socket_mode: bool) -> App:
    """Bolt verifies the bot token (auth.test) once, here, before the first request arrives.

    Left to the first requests instead, every concurrent one calls auth.test at once and any failure
    becomes an HTTP 500 to Slack. If Slack cannot be reached now, the bot still starts and Bolt
    verifies lazily on the first request, as it does without verification.
    """
    options: dict[str, Any] = {
        "client": web_client(settings),
        "signing_secret": settings.slack_signing_secret or "",
        "request_verification_enabled": not socket_mode,
        "process_before_response": True,
    }
    try:
        return App(**options, token_verification_enabled=True)
    except (BoltError, SlackClientError, OSError) as exc:
        log.warning("could not verify the bot token with Slack at start (%s); will verify on first use", exc)
        return App(**options, token_verification_enabled=False)
