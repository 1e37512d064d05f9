"""Request guards in front of the listeners: replayed Slack requests are refused, command floods slowed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from bot.slack.audit import Audited
from core.settings import Settings

log = logging.getLogger(__name__)

# Slack's signature verifier accepts a timestamp up to five minutes either side of now.
SIGNATURE_WINDOW_SECONDS = 5 * 60


class ReplayCache:
    """Signatures of verified requests, each kept until its timestamp leaves the verifier's window.

    After that the timestamp check refuses the request anyway, so the cache never grows past five
    minutes of traffic. It lives in one process: see docs-deploy.md for what that covers.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._expiry: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def first_time(self, signature: str, timestamp: float) -> bool:
        """True the first time a signature is seen; False for a replay."""
        now = self.clock()
        with self._lock:
            while self._order and self._order[0][0] < now:
                self._expiry.pop(self._order.popleft()[1], None)
            if signature in self._expiry:
                return False
            expiry = max(timestamp + SIGNATURE_WINDOW_SECONDS, now) + 1
            self._expiry[signature] = expiry
            self._order.append((expiry, signature))
            return True


class RateLimiter:
    """At most `limit` events per user in any sliding `period` seconds."""

    def __init__(self, limit: int, period: float = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, user: str) -> bool:
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(user, deque())
            while events and events[0] <= now - self.period:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


def _header(request: BoltRequest, name: str) -> str:
    values = request.headers.get(name) or [""]
    return values[0]


def _seconds(timestamp: str) -> float:
    """A verified request's timestamp; 0 (an already expired one) for anything that is not a number."""
    return float(timestamp) if timestamp.isascii() and timestamp.isdigit() else 0.0


class _RefuseReplays(Middleware):
    """A signature seen before is refused (Socket Mode requests carry none: the app token authenticates
    their connection)."""

    def __init__(self) -> None:
        self.replays = ReplayCache()

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        signature = _header(req, "x-slack-signature")
        timestamp = _header(req, "x-slack-request-timestamp")
        if signature and not self.replays.first_time(signature, _seconds(timestamp)):
            log.warning("refused a replayed Slack request (a signature seen before)")
            return BoltResponse(status=401, body="")
        return next()


class _LimitCommands(Middleware):
    """Past the per-person limit, a slash command is answered with a request to slow down."""

    def __init__(self, settings: Settings) -> None:
        self.limiter = RateLimiter(settings.tokens_rate_limit_per_minute)
        self.slow_down = (
            f":snail: Slow down a little: tokens-bot answers at most {settings.tokens_rate_limit_per_minute}"
            " commands a minute per person. Try again in a minute."
        )

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        body = req.body
        user = str(body.get("user_id") or "")
        if body.get("command") and not self.limiter.allow(user):
            Audited.command(user, str(body.get("text") or ""), None).record(
                "rate_limited", time.perf_counter()
            )
            # A slash command's ack body is shown to the user as an ephemeral message.
            return BoltResponse(
                status=200,
                body=json.dumps({"response_type": "ephemeral", "text": self.slow_down}),
                headers={"content-type": "application/json"},
            )
        return next()


def install(app: App, settings: Settings) -> None:
    """Add the guards as global middleware; Bolt runs them after it has verified the signature."""
    app.use(_RefuseReplays())
    app.use(_LimitCommands(settings))
