"""The Slack calls approvals need beyond a reply, behind a small port the console can implement too."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Protocol
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from bot.render.common import Reply
from core.domain.approvals import Person
from core.settings import Settings

log = logging.getLogger(__name__)

# Slack asks for Retry-After seconds on 429; a longer wait is worse than giving up on one message update.
_MAX_DELAY = 30.0

# Failures below the Web API: the SDK's own (a bad URL or proxy), urllib's, timeouts, refused or dropped
# connections (all OSError), and a broken HTTP exchange. HTTPError is an OSError too, but the SDK turns
# every HTTP answer into a SlackApiError first.
_TRANSPORT_ERRORS = (SlackRequestError, OSError, HTTPException)


def _surely_unsent(exc: BaseException) -> bool:
    """Whether the request cannot have reached Slack: the connection was refused or the name unresolved."""
    reason = exc.reason if isinstance(exc, URLError) else exc
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


class SlackPort(Protocol):
    """What a handler may ask of Slack besides its reply. Failures are logged, never raised: by the
    time these run the database decision has committed, and it stands whatever Slack does."""

    def person(self, user_id: str) -> Person:
        """Name and email of a Slack user; the email stays None when Slack does not give it."""
        ...

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str | None:
        """Post a message; its `ts`, or None when Slack refused it."""
        ...

    def update(self, channel: str, ts: str, reply: Reply) -> bool:
        """Replace a message in place; False when Slack refused it."""
        ...

    def notify(self, user_id: str, reply: Reply) -> None:
        """Tell one person something privately (a direct message from the bot)."""
        ...


class WebSlack:
    """The port over Slack's Web API, retrying what is safe to retry with bounded backoff."""

    def __init__(self, client: WebClient, settings: Settings) -> None:
        self.client = client
        self.retries = settings.tokens_slack_retries
        self.base_delay = settings.tokens_slack_retry_seconds

    def person(self, user_id: str) -> Person:
        response = self._call("users.info", lambda: self.client.users_info(user=user_id), idempotent=True)
        user = response.get("user") if response is not None else None
        if not isinstance(user, dict):
            return Person(slack_id=user_id, name=user_id)
        profile = user.get("profile") or {}
        name = profile.get("real_name") or user.get("real_name") or user.get("name") or user_id
        return Person(slack_id=user_id, name=str(name), email=profile.get("email"))

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str | None:
        # A 5xx or a timeout may have posted the message after all; only a 429 (or a refused connection)
        # is surely safe to send again.
        response = self._call(
            "chat.postMessage",
            lambda: self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, **reply.as_kwargs()),
            idempotent=False,
        )
        return None if response is None else str(response.get("ts"))

    def update(self, channel: str, ts: str, reply: Reply) -> bool:
        response = self._call(
            "chat.update",
            lambda: self.client.chat_update(channel=channel, ts=ts, **reply.as_kwargs()),
            idempotent=True,
        )
        return response is not None

    def notify(self, user_id: str, reply: Reply) -> None:
        # Posting to a user ID opens the direct message with the bot; it stays in their DMs, unlike an ephemeral.
        self.post(user_id, reply)

    def _call(
        self, method: str, send: Callable[[], SlackResponse], *, idempotent: bool
    ) -> SlackResponse | None:
        """One Web API call, retried within bounds where safe; None when it failed for good, never raised."""
        attempt = 0
        while True:
            try:
                return send()
            except SlackApiError as exc:
                status = exc.response.status_code
                retryable = status == 429 or (idempotent and status >= 500)
                if not retryable or attempt >= self.retries:
                    log.warning("Slack %s failed for good (HTTP %s): %s", method, status, exc.response.data)
                    return None
                delay = self._delay(exc.response, attempt)
                attempt += 1
                log.info("Slack %s answered HTTP %s; retry %d in %.2fs", method, status, attempt, delay)
                time.sleep(delay)
            except _TRANSPORT_ERRORS as exc:
                # A timeout or dropped connection may come after Slack acted on the request: only calls
                # that are safe to repeat, or that surely never left, are sent again.
                if not (idempotent or _surely_unsent(exc)) or attempt >= self.retries:
                    log.warning("Slack %s failed for good (%s): %s", method, type(exc).__name__, exc)
                    return None
                delay = self._backoff(attempt)
                attempt += 1
                log.info(
                    "Slack %s failed (%s); retry %d in %.2fs", method, type(exc).__name__, attempt, delay
                )
                time.sleep(delay)

    def _delay(self, response: SlackResponse, attempt: int) -> float:
        """Slack's Retry-After when it gives one, else exponential backoff from the configured base."""
        retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after")
        if retry_after is None:
            return self._backoff(attempt)
        try:
            return min(float(retry_after), _MAX_DELAY)
        except ValueError:
            return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff from the configured base, never past _MAX_DELAY."""
        delay: float = min(self.base_delay * 2**attempt, _MAX_DELAY)
        return delay
