"""A fake Slack Web API on loopback: records what the bot sends, the way bolt-python's own tests do.

Every call is recorded, `views.open`, `views.update` and `views.publish` (modals and the Home tab) included,
with the view decoded.

Files go through Slack's external upload as they would: files.getUploadURLExternal hands out an upload URL
on this same server (`/upload/<file id>`), the bytes POSTed there are recorded as they came, and
files.completeUploadExternal records which files were shared where.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from bot.listeners._progress import WORKING_NOTE

_WORKING_NOTE_TEXT = WORKING_NOTE.as_kwargs()["text"]


@dataclass(frozen=True)
class Recorded:
    """One call the bot made: a Web API method (`chat.postMessage`), a response_url post, or a file's
    bytes POSTed to an upload URL (`/upload/<file id>`, body `{"content": bytes, "content_type": ...}`)."""

    path: str
    body: dict[str, Any]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.path.removeprefix("/api/")


class _Server(ThreadingHTTPServer):
    # Slack's servers take a burst of connections; the standard library's default backlog of 5 would
    # reset them, and a test would measure that instead of the bot.
    request_queue_size = 128
    daemon_threads = True


class FakeSlack:
    """Serves `/api/<method>` like Slack's Web API and `/response/<id>` like response URLs."""

    def __init__(self) -> None:
        self.calls: list[Recorded] = []
        # TCP connections the bot opened to this server, to tell reused connections from new ones.
        self.connections = 0
        # users.info answers: Slack ID -> {"name": ..., "email": ...}; unknown IDs get a made-up staff email.
        self.users: dict[str, dict[str, str]] = {}
        self._failures: dict[str, list[tuple[int, str | None]]] = {}
        self._stalls: dict[str, list[float]] = {}
        self._changed = threading.Condition()
        self._next_ts = 1_700_000_000.000100
        self._next_file = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as Slack's servers: the bot's clients reuse a connection for many calls.
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with fake._changed:
                    fake.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data_in = self.rfile.read(length)
                time.sleep(fake._stall(self.path))
                content_type = self.headers.get("Content-Type", "")
                raw = "" if self.path.startswith("/upload/") else data_in.decode()
                if self.path.startswith("/upload/"):
                    body: dict[str, Any] = {"content": data_in, "content_type": content_type}
                elif content_type.startswith("application/json"):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "attachments", "files", "view"):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                status, retry_after, payload = fake._answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
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

    def stall(self, method: str, *seconds: float) -> None:
        """Hold the next calls of `method` (an API method, or `/response/<name>`) this long before answering."""
        with self._changed:
            self._stalls.setdefault(method, []).extend(seconds)

    def _stall(self, path: str) -> float:
        with self._changed:
            pending = self._stalls.get(path.removeprefix("/api/"))
            return pending.pop(0) if pending else 0.0

    def fail(self, method: str, *statuses: int, retry_after: str | None = None) -> None:
        """Answer the next calls of `method` with these HTTP statuses (429 carries `retry_after`), then recover."""
        with self._changed:
            self._failures.setdefault(method, []).extend((s, retry_after) for s in statuses)

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, str | None, dict[str, Any]]:
        method = path.removeprefix("/api/")
        with self._changed:
            pending = self._failures.get(method)
            status, retry_after = pending.pop(0) if pending else (200, None)
            self._next_ts += 1
            payload = self._payload(path, method, body, status, f"{self._next_ts:.6f}")
            self.calls.append(
                Recorded(path=path, body=body, at=time.monotonic(), status=status, response=payload)
            )
            self._changed.notify_all()
        return status, retry_after if status == 429 else None, payload

    def _payload(self, path: str, method: str, body: dict[str, Any], status: int, ts: str) -> dict[str, Any]:
        if status != 200:
            return {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        if path.startswith(("/response/", "/upload/")):
            return {"ok": True}
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"}
        if method in ("chat.postMessage", "chat.update"):
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts") or ts}
        if method == "users.info":
            return {"ok": True, "user": self._user(str(body.get("user")))}
        if method == "conversations.open":
            # Slack gives a person's direct message with the bot a D… id; this fake derives it.
            return {"ok": True, "channel": {"id": f"D{body.get('users')}"}}
        if method == "files.getUploadURLExternal":
            self._next_file += 1
            file_id = f"F{self._next_file:06d}"
            return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method in ("views.open", "views.update", "views.publish"):
            view = body.get("view")
            return {"ok": True, "view": json.loads(view) if isinstance(view, str) else view}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": body.get("files", [])}
        return {"ok": True}

    def _user(self, user_id: str) -> dict[str, Any]:
        known = self.users.get(user_id, {})
        name = known.get("name", f"Staff {user_id}")
        email = known.get("email", f"{user_id.lower()}@staff.example")
        return {
            "id": user_id,
            "name": user_id.lower(),
            "real_name": name,
            "profile": {"real_name": name, "email": email},
        }

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

    def uploads(self, file_ids: list[str]) -> dict[str, bytes]:
        """The bytes POSTed to each file's upload URL, by file id."""
        return {
            c.path.removeprefix("/upload/"): c.body["content"]
            for c in self.calls
            if c.path.startswith("/upload/") and c.path.removeprefix("/upload/") in file_ids
        }

    def responses(self, name: str, *, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The bodies posted to the response URL called `name`, once `count` of them arrived; not the
        "working…" note any reply sends first when it takes more than 1.5 s, as one may on a busy machine."""
        calls = self.wait_for(
            lambda c: c.path == f"/response/{name}" and c.body.get("text") != _WORKING_NOTE_TEXT,
            count=count,
            timeout=timeout,
        )
        return [c.body for c in calls]
