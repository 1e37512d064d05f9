"""Getting replies to Slack: every response_url post is timed out and retried within bounds."""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

from slack_bolt import App, BoltRequest, BoltResponse, Respond
from slack_bolt.context.respond.internals import _build_message
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    HttpRequest,
    HttpResponse,
    Jitter,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryState,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookResponse

from bot.slack.keepalive import KeepAliveWebClient, KeepAliveWebhookClient
from core.settings import Settings

log = logging.getLogger(__name__)

# A longer Retry-After than this is not waited for: the thread is worth more than one late reply.
MAX_RETRY_AFTER_SECONDS = 30.0


class _SpreadJitter(Jitter):
    """Up to half the interval again, so replicas retrying together do not hit Slack in step."""

    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random() / 2)


class _BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Honours 429's Retry-After, unless Slack asks for a wait longer than MAX_RETRY_AFTER_SECONDS."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        headers = {name.lower(): values for name, values in response.headers.items()}
        try:
            wait = float((headers.get("retry-after") or ["1"])[0])
        except ValueError:
            return True
        return wait <= MAX_RETRY_AFTER_SECONDS


def retry_handlers(settings: Settings) -> list[RetryHandler]:
    """Retry a reply that surely did not arrive: refused or dropped connections, timeouts, 429, 500, 503.

    At most TOKENS_SLACK_RETRIES retries in all, backing off from TOKENS_SLACK_RETRY_SECONDS. Only
    replies go through these: a reply is a message, so a retry can at worst show it twice, and the
    database work behind it has already been done exactly once.
    """
    backoff = BackoffRetryIntervalCalculator(settings.tokens_slack_retry_seconds, _SpreadJitter())
    retries = settings.tokens_slack_retries
    return [
        ConnectionErrorRetryHandler(
            max_retry_count=retries,
            interval_calculator=backoff,
            error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError],
        ),
        _BoundedRateLimitRetryHandler(max_retry_count=retries),
        ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
    ]


def web_client(settings: Settings) -> WebClient:
    """The app's Web API client: SLACK_API_URL, a timeout, kept-alive connections, no retries of its own.

    Every retry is left to the caller (bot.slack.port), which alone knows whether a call is safe to
    repeat: a chat.postMessage whose connection dropped, or that was answered 500, may have been posted.
    The SDK's default would re-send after a dropped connection.
    """
    return KeepAliveWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=settings.tokens_slack_timeout_seconds,
        retry_handlers=[],
    )


def reply_client(settings: Settings) -> KeepAliveWebhookClient:
    """The client replies are posted with: a timeout, kept-alive connections and bounded retries.

    It is made once per app, not per reply: its user agent, any proxy the environment names and its retry
    handlers (which keep no state of their own: a retry's state lives in the call) are the same for every
    reply. `RetryingRespond` posts through a copy of it aimed at the reply's response URL.
    """
    return KeepAliveWebhookClient(
        url="", timeout=settings.tokens_slack_timeout_seconds, retry_handlers=retry_handlers(settings)
    )


class RetryingRespond(Respond):
    """Bolt's `respond()`, posting through `reply_client`'s settings to the request's response URL."""

    def __init__(self, *, response_url: str | None, client: KeepAliveWebhookClient) -> None:
        super().__init__(response_url=response_url)
        self.client: KeepAliveWebhookClient | None = None
        if response_url:
            self.client = copy.copy(client)
            self.client.url = response_url

    def __call__(
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[str, Any] | Block] | None = None,
        attachments: Sequence[dict[str, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.client is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(
                text=text,
                blocks=blocks,
                attachments=attachments,
                response_type=response_type,
                replace_original=replace_original,
                delete_original=delete_original,
                unfurl_links=unfurl_links,
                unfurl_media=unfurl_media,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        response = self.client.send_dict(message)
        if response.status_code != 200:
            log.warning(
                "Slack refused a reply for good: HTTP %s %s", response.status_code, response.body[:200]
            )
        return response


class _ReliableRespond(Middleware):
    """Every listener (and the error handler) gets the retrying `respond`, and the app's own client.

    Bolt hands each request a fresh plain WebClient (so a listener may change its token); the bot
    changes no token, and the app's client keeps its connections alive, so every request shares it.
    """

    def __init__(self, shared: WebClient, settings: Settings) -> None:
        self.shared = shared
        self.replies = reply_client(settings)

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        context = req.context
        context["client"] = self.shared
        if context.response_url:
            context["respond"] = RetryingRespond(response_url=context.response_url, client=self.replies)
        return next()


def install(app: App, settings: Settings) -> None:
    """Give every request the retrying `respond` and the app's own client (see _ReliableRespond)."""
    app.use(_ReliableRespond(app.client, settings))
