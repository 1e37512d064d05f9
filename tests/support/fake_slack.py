"""A fake Slack Web API on loopback: records what the bot sends, the way bolt-python's own tests do."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Recorded:
    """One call the bot made: a Web API method (`chat.postMessage`) or a response_url post."""

    path: str
    body: dict[str, Any]
    at: float

    @property
    def method(self) -> str:
        return self.path.removeprefix("/api/")


class FakeSlack:
    """Serves `/api/<method>` like Slack's Web API and `/response/<id>` like response URLs."""

    def __init__(self) -> None:
        self.calls: list[Recorded] = []
        self._changed = threading.Condition()
        self._next_ts = 1_700_000_000.000100
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "attachments"):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                payload = fake._answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            self.calls.append(Recorded(path=path, body=body, at=time.monotonic()))
            self._next_ts += 1
            ts = f"{self._next_ts:.6f}"
            self._changed.notify_all()
        if path.startswith("/response/"):
            return {"ok": True}
        method = path.removeprefix("/api/")
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"}
        if method in ("chat.postMessage", "chat.update"):
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts") or ts}
        return {"ok": True}

    def wait_for(
        self, predicate: Callable[[Recorded], bool], *, timeout: float = 10.0, count: int = 1
    ) -> list[Recorded]:
        """Block until `count` recorded calls match; the bot replies asynchronously after its ack."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self.calls if predicate(c)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} matching Slack calls within {timeout}s; saw"
                        f" {[c.path for c in self.calls]}"
                    )
                self._changed.wait(remaining)

    def responses(self, name: str, *, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The bodies posted to the response URL called `name`, once `count` of them arrived."""
        calls = self.wait_for(lambda c: c.path == f"/response/{name}", count=count, timeout=timeout)
        return [c.body for c in calls]
