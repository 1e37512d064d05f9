"""The door in front of Bolt: a request reaches it only once its Slack signature verified, and only whole.

Bolt verifies signatures too, but only after it has parsed the body, built a `respond` from the
body's `response_url` and, when anything fails on the way, handed both to the error handler. So a
malformed unsigned request (a timestamp that is not a number) became an HTTP 500 and a "Something went
wrong" POSTed to whatever URL its body named. Here nothing of an unverified request is parsed or acted
on: its size, headers and signature are checked on the raw bytes first, and every refusal is a 4xx
with no outgoing call. Bolt's own verification stays on behind this one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.context import BoltContext
from slack_bolt.request.internals import build_context

from bot.slack.guards import SIGNATURE_WINDOW_SECONDS

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

# Slack's slash commands and button clicks are a few kilobytes; a megabyte is far past any of them.
MAX_BODY_BYTES = 1024 * 1024
# The bodies Slack sends to this app: a form for slash commands and interactivity, JSON for the Events API
# (the one event it subscribes to, app_home_opened, and Slack's url_verification of the request URL).
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_EVENT_TYPES = ("event_callback", "url_verification")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_LENGTH = re.compile(r"[0-9]{1,12}")


class Refused(Exception):
    """A request answered with `status` before Bolt sees it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SlackGate:
    """WSGI app for POST `path`: verify, check the form, then dispatch to the Bolt app."""

    def __init__(
        self,
        app: App,
        signing_secret: str,
        *,
        path: str = "/slack/events",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secret:
            # Anyone could sign with an empty key: `tokens-bot serve` refuses to start without one too.
            raise ValueError("the Slack gate needs SLACK_SIGNING_SECRET")
        self.app = app
        self.secret = signing_secret.encode()
        self.path = path
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = self._admit(environ)
        except Refused as refused:
            if refused.status != 404:
                log.warning("refused a request to %s: %s", self.path, refused.reason)
            return _plain(start_response, refused.status, refused.reason)
        response = self.app.dispatch(request)
        wsgi = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        start_response(wsgi.status, wsgi.get_headers())
        return wsgi.get_body()

    def _admit(self, environ: dict[str, Any]) -> BoltRequest:
        """The request as Bolt takes it, or Refused: 404/405, 413, 401 before the signature holds, 400 after."""
        if environ.get("PATH_INFO") != self.path:
            raise Refused(404, "not found")
        if environ.get("REQUEST_METHOD") != "POST":
            raise Refused(405, "only POST")
        length = str(environ.get("CONTENT_LENGTH") or "")
        if not _LENGTH.fullmatch(length):
            raise Refused(400, "a Content-Length is required")
        if int(length) > MAX_BODY_BYTES:
            # Refused unread: gunicorn drains a little of it, or closes the connection.
            raise Refused(413, "body too large")
        timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "")
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE") or "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            raise Refused(401, "missing or malformed signature headers")
        if abs(self.clock() - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
            raise Refused(401, "timestamp outside the signature window")
        raw = environ["wsgi.input"].read(int(length))
        if len(raw) != int(length):
            raise Refused(400, "body shorter than its Content-Length")
        expected = hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256)
        if not hmac.compare_digest("v0=" + expected.hexdigest(), signature):
            raise Refused(401, "invalid signature")
        # Signed by Slack from here on; what is still wrong is a malformed request, not a forged one.
        content_type = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if content_type == JSON:
            return _event(raw, environ)
        if content_type != FORM:
            raise Refused(400, f"the body must be {FORM} (or {JSON} for an event)")
        try:
            body = raw.decode("utf-8")
            if body.startswith("{"):
                # Bolt reads any body that starts with `{` as JSON, whatever its content type, and failed
                # on one that is not: such a form stays refused, now that Bolt no longer reads it.
                json.loads(body)
            parsed = _parse_form(body)
            _require_object(parsed)
            return _bolt_request(body, parsed, environ)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            raise Refused(400, f"malformed body ({type(exc).__name__})") from None


def _event(raw: bytes, environ: dict[str, Any]) -> BoltRequest:
    """An Events API body: a JSON object of one of the types Slack sends, whose `event` is an object."""
    try:
        body = raw.decode("utf-8")
        parsed = json.loads(body)
        if not isinstance(parsed, dict) or parsed.get("type") not in _EVENT_TYPES:
            raise TypeError("not an event Slack sends")
        if not isinstance(parsed.get("event", {}), dict):
            raise TypeError("event is not an object")
        return _bolt_request(body, parsed, environ)
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
        raise Refused(400, f"malformed body ({type(exc).__name__})") from None


def _bolt_request(body: str, parsed: dict[str, Any], environ: dict[str, Any]) -> BoltRequest:
    """The request as Bolt takes it, with the body as the gate read it: Bolt does not parse it again.

    Bolt's own signature check still reads the raw body. Its own reading of a form would also be wrong:
    it takes any form whose text contains the word "payload" for an interactive payload and reads it as
    empty, so `/tokens adjust … fix payload bug` would never reach a listener.
    """
    request = BoltRequest(body="", query=environ.get("QUERY_STRING", ""), headers=_headers(environ))
    request.raw_body = body
    request.body = parsed
    request.context = build_context(BoltContext({}), parsed)
    return request


def _parse_form(body: str) -> Any:
    """A form as Slack means it: interactivity's JSON `payload` field when there is one, else the fields."""
    fields = dict(parse_qsl(body, keep_blank_values=True))
    return json.loads(fields["payload"]) if "payload" in fields else fields


# Parts of an interactive payload that Bolt and the listeners read as objects when present.
_OBJECTS = ("user", "team", "channel", "container", "enterprise", "message", "view")


def _require_object(parsed: Any) -> None:
    """The body in the shape Bolt and the listeners read it: a form, or a `payload` JSON object whose
    parts are objects and whose actions each have an id. Slack sends nothing else; anything else would
    crash Bolt's routing (an HTTP 500) or a listener after its ack."""
    if not isinstance(parsed, dict):
        raise TypeError("the payload is not a JSON object")
    for key in ("type", "response_url", "command", "user_id", "text"):
        if parsed.get(key) is not None and not isinstance(parsed[key], str):
            raise TypeError(f"{key} is not a string")
    for key in _OBJECTS:
        if parsed.get(key) is not None and not isinstance(parsed[key], dict):
            raise TypeError(f"{key} is not an object")
    user = parsed.get("user")
    if isinstance(user, dict) and not isinstance(user.get("id"), str):
        raise TypeError("user.id is not a string")
    actions = parsed.get("actions")
    if actions is not None and not (
        isinstance(actions, list)
        and actions
        and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
    ):
        raise TypeError("actions is not a list of actions")
    authorizations = parsed.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        raise TypeError("authorizations is not a list of objects")


def _headers(environ: dict[str, Any]) -> dict[str, str | Sequence[str]]:
    """The request headers as Bolt's WSGI adapter gives them: lower-case, dashes for underscores."""
    headers: dict[str, str | Sequence[str]] = {}
    for key, value in environ.items():
        if key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            headers[key.lower().replace("_", "-")] = str(value)
        elif key.startswith("HTTP_"):
            headers[key[5:].lower().replace("_", "-")] = str(value)
    return headers


def _plain(start_response: StartResponse, status: int, reason: str) -> Iterable[bytes]:
    body = json.dumps({"error": reason}).encode()
    phrase = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    line = f"{status} {phrase.get(status, 'Payload Too Large')}"
    start_response(line, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
