"""HTTP mode: a WSGI app serving `POST /slack/events` and `GET /healthz`, run under gunicorn."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.app import build_app
from bot.bootstrap import build_service
from core.service import TokensService
from core.settings import Settings

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class TokensWsgi:
    """Routes health checks itself and everything under /slack/events to Bolt."""

    def __init__(self, service: TokensService) -> None:
        self.service = service
        self.slack = SlackRequestHandler(build_app(service), path="/slack/events")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._health(start_response)
        return self.slack(environ, start_response)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            with self.service.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            status, body = "200 OK", {"status": "ok", "database": "ok"}
        except Exception:
            log.warning("health check: database unreachable", exc_info=True)
            status, body = "503 Service Unavailable", {"status": "degraded", "database": "unreachable"}
        payload = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code, so `tokens-bot serve` needs no config file."""

    def __init__(self, settings: Settings, url: str, options: dict[str, Any]) -> None:
        self.settings = settings
        self.url = url
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> TokensWsgi:
        # Runs in each worker after fork: every worker gets its own connection pool.
        return TokensWsgi(build_service(self.settings, self.url))


def serve(settings: Settings, url: str) -> None:
    """Serve HTTP on PORT with gunicorn's threaded workers (WEB_CONCURRENCY processes)."""
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
    _Gunicorn(
        settings,
        url,
        {
            "bind": f"0.0.0.0:{settings.port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": int(os.environ.get("GUNICORN_THREADS", "8")),
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
        },
    ).run()
