"""Keep-alive HTTP connections to Slack and to response URLs, pooled per host and shared by every thread.

slack_sdk's clients send each call through `urlopen`, which opens a connection (and a TLS handshake)
for one request and closes it: under a burst of checks that is a large share of a reply's CPU. The
clients below send the same requests, with the same headers, timeouts and retry handlers, over a
connection kept open between calls. Errors look as `urlopen`'s do (URLError when the request could not
be sent, HTTPError for an answer outside 2xx), so every retry rule treats them as before.
"""

from __future__ import annotations

import io
import os
import threading
import time
from email.message import Message
from http.client import HTTPConnection, HTTPResponse, HTTPSConnection, RemoteDisconnected
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.webhook import WebhookClient, WebhookResponse

# An idle connection older than this is closed rather than reused: servers drop idle ones (Slack's
# after about a minute), and a request sent on a dropped one has to be sent again.
IDLE_SECONDS = 20.0
# Idle connections kept per host: a worker's reply threads, with room to spare.
IDLE_PER_HOST = 8

_Key = tuple[str, str, int]


class Answer:
    """A read answer, in the shape slack_sdk reads from `urlopen`'s."""

    def __init__(self, status: int, headers: Message, body: bytes) -> None:
        self.status = self.code = status
        self.headers = headers
        self._body = body

    def read(self) -> bytes:
        return self._body


class ConnectionPool:
    """Open connections by (scheme, host, port); a connection serves one request at a time."""

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """A forked worker must not share its parent's sockets (or a lock held at the fork): it starts anew."""
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[tuple[float, HTTPConnection]]] = {}

    def open(self, request: Request, timeout: float) -> Answer:
        """Send `request` and read its answer whole, as `urlopen` would, on a pooled connection.

        A connection the server closed while it sat idle fails before the server reads anything; the
        request is then sent once more on a new connection, as browsers do. Any other failure is raised.
        """
        parts = urlsplit(request.full_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SlackRequestError(f"Invalid URL detected: {request.full_url}")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn, reused = self._checkout(key, timeout)
        try:
            response = self._exchange(conn, request, target)
        except (RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if not reused:
                raise
            conn = self._connect(key, timeout)
            response = self._exchange(conn, request, target)
        try:
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._checkin(key, conn)
        if not 200 <= response.status < 300:
            raise HTTPError(
                request.full_url, response.status, response.reason, response.headers, io.BytesIO(body)
            )
        return Answer(response.status, response.headers, body)

    @staticmethod
    def _exchange(conn: HTTPConnection, request: Request, target: str) -> HTTPResponse:
        try:
            conn.request(
                request.get_method(), target, body=request.data, headers=dict(request.header_items())
            )
        except (RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise
        except OSError as exc:
            conn.close()
            raise URLError(exc) from exc
        try:
            return conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _checkout(self, key: _Key, timeout: float) -> tuple[HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                since, conn = idle.pop()
                if now - since <= IDLE_SECONDS and conn.sock is not None:
                    conn.sock.settimeout(timeout)
                    return conn, True
                conn.close()
        return self._connect(key, timeout), False

    @staticmethod
    def _connect(key: _Key, timeout: float) -> HTTPConnection:
        scheme, host, port = key
        kind = HTTPSConnection if scheme == "https" else HTTPConnection
        return kind(host, port, timeout=timeout)

    def _checkin(self, key: _Key, conn: HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < IDLE_PER_HOST:
                idle.append((time.monotonic(), conn))
                return
        conn.close()


# One pool per process, shared by the Web API client, every reply and the file uploads.
POOL = ConnectionPool()


class KeepAliveWebClient(WebClient):
    """slack_sdk's WebClient, its HTTP exchange sent through the pool (through urllib behind a proxy)."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy or self.ssl:
            return super()._perform_urllib_http_request_internal(url, req)
        answer = POOL.open(req, self.timeout)
        if answer.headers.get_content_type() == "application/gzip":
            return {"status": answer.status, "headers": answer.headers, "body": answer.read()}
        charset = answer.headers.get_content_charset() or "utf-8"
        return {"status": answer.status, "headers": answer.headers, "body": answer.read().decode(charset)}


class KeepAliveWebhookClient(WebhookClient):
    """slack_sdk's WebhookClient (response URLs), its HTTP exchange sent through the pool (or as above)."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        if self.proxy or self.ssl:
            sent: WebhookResponse = super()._perform_http_request_internal(url, req)
            return sent
        answer = POOL.open(req, self.timeout)
        charset = answer.headers.get_content_charset() or "utf-8"
        return WebhookResponse(
            url=url,
            status_code=answer.status,
            body=answer.read().decode(charset),
            headers=answer.headers,  # type: ignore[arg-type]
        )
