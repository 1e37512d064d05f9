"""The Slack calls routes need beyond a reply (approvals, direct messages, charts), behind a small port the
console can implement too."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from bot.render.common import Reply
from bot.slack.keepalive import POOL
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

    def direct_channel(self, user_id: str) -> str | None:
        """The channel of the bot's direct message with one person, opened if need be; None when Slack
        refused or answered with anything but a direct message, so nothing private goes elsewhere."""
        ...

    def upload(
        self, channel: str, filename: str, content: bytes, title: str, *, thread_ts: str | None = None
    ) -> bool:
        """Share a file (a chart) in a channel, or in a thread of it; False when Slack refused it."""
        ...


class WebSlack:
    """The port over Slack's Web API, retrying what is safe to retry with bounded backoff."""

    def __init__(self, client: WebClient, settings: Settings) -> None:
        self.client = client
        self.retries = settings.tokens_slack_retries
        self.base_delay = settings.tokens_slack_retry_seconds
        self.timeout = settings.tokens_slack_timeout_seconds

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

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        """Open a modal for the person whose click or command gave `trigger_id` (valid 3 s, used once)."""
        response = self._call(
            "views.open", lambda: self.client.views_open(trigger_id=trigger_id, view=view), idempotent=False
        )
        return response is not None

    def publish_home(self, user_id: str, view: dict[str, Any]) -> bool:
        """Replace one person's Home tab with `view`; publishing it again is harmless."""
        response = self._call(
            "views.publish", lambda: self.client.views_publish(user_id=user_id, view=view), idempotent=True
        )
        return response is not None

    def notify(self, user_id: str, reply: Reply) -> None:
        # Posting to a user ID opens the direct message with the bot; it stays in their DMs, unlike an ephemeral.
        self.post(user_id, reply)

    def direct_channel(self, user_id: str) -> str | None:
        # Opening a direct message that is already open gives the same channel: safe to repeat.
        response = self._call(
            "conversations.open", lambda: self.client.conversations_open(users=user_id), idempotent=True
        )
        channel = response.get("channel") if response is not None else None
        channel_id = channel.get("id") if isinstance(channel, dict) else None
        # A direct message's ID starts with D; anything else would be a conversation others can read.
        if not isinstance(channel_id, str) or not channel_id.startswith("D"):
            if response is not None:
                log.warning("Slack conversations.open gave no direct message channel: %r", channel_id)
            return None
        return channel_id

    def upload(
        self, channel: str, filename: str, content: bytes, title: str, *, thread_ts: str | None = None
    ) -> bool:
        """Slack's external upload: ask for an upload URL, POST the bytes there, then share the file.

        Asking for a URL and sending the bytes to it are safe to repeat (nothing is shared until the
        last step); completing may have shared the file even when its answer was lost, so it is only
        retried like a message post.
        """
        ticket = self._call(
            "files.getUploadURLExternal",
            lambda: self.client.files_getUploadURLExternal(filename=filename, length=len(content)),
            idempotent=True,
        )
        url = ticket.get("upload_url") if ticket is not None else None
        file_id = ticket.get("file_id") if ticket is not None else None
        # Only a web URL: urllib would also open file: and other schemes, which Slack never sends.
        if (
            not isinstance(url, str)
            or not isinstance(file_id, str)
            or urlsplit(url).scheme not in ("https", "http")
        ):
            if ticket is not None:
                log.warning("Slack files.getUploadURLExternal gave no usable upload URL and file id")
            return False
        if not self._send_bytes(url, content):
            return False
        done = self._call(
            "files.completeUploadExternal",
            lambda: self.client.files_completeUploadExternal(
                files=[{"id": file_id, "title": title}], channel_id=channel, thread_ts=thread_ts
            ),
            idempotent=False,
        )
        return done is not None

    def _send_bytes(self, url: str, content: bytes) -> bool:
        """POST a file's bytes to the upload URL Slack gave (pre-signed: no token goes with them).

        Retried within the same bounds as the Web API calls; the URL itself is never logged.
        """
        attempt = 0
        while True:
            request = Request(
                url, data=content, method="POST", headers={"Content-Type": "application/octet-stream"}
            )
            try:
                POOL.open(request, self.timeout)
                return True
            except HTTPError as exc:
                if not (exc.code == 429 or exc.code >= 500) or attempt >= self.retries:
                    log.warning("Slack's file upload failed for good (HTTP %s)", exc.code)
                    return False
                failure = f"HTTP {exc.code}"
            except (OSError, HTTPException) as exc:
                if attempt >= self.retries:
                    log.warning("Slack's file upload failed for good (%s)", type(exc).__name__)
                    return False
                failure = type(exc).__name__
            delay = self._backoff(attempt)
            attempt += 1
            log.info("Slack's file upload failed (%s); retry %d in %.2fs", failure, attempt, delay)
            time.sleep(delay)

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
