"""Connections to Slack and to response URLs are kept alive and shared: fewer connections than calls."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError
from urllib.request import Request

import pytest
from sqlalchemy import Engine

from bot.slack.delivery import retry_handlers
from bot.slack.keepalive import ConnectionPool, KeepAliveWebhookClient
from core.settings import Settings
from tests.support.bot_process import free_port
from tests.support.fake_slack import FakeSlack
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, ask


def test_replies_reuse_the_bots_connections(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Twenty checks, twenty replies, over a few connections per worker, not one per reply."""
    with engine.begin() as conn:
        user = add_user(conn, remaining=100, used=0)
        add_usage(conn, user, tokens=100, action="admin_grant", model=None)
    ask(slack, fake_slack, f"check {user}")  # each worker may open its connection now
    before = fake_slack.connections
    for _ in range(20):
        ask(slack, fake_slack, f"check {user}")
    # A reply may start before the previous one's connection is back in its worker's pool (the fake
    # records a post before answering it), so a worker can hold two; without reuse this would be 20.
    assert fake_slack.connections - before <= 6


def test_concurrent_posts_share_the_pool_safely(fake_slack: FakeSlack) -> None:
    """Eight threads posting at once: every post arrives whole, over no more connections than threads."""
    pool = ConnectionPool()
    before = fake_slack.connections

    def post(i: int) -> int:
        request = Request(
            fake_slack.response_url(f"pooled-{i}"),
            data=b'{"text": "%d"}' % i,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return pool.open(request, 5).status

    with ThreadPoolExecutor(8) as threads:
        assert set(threads.map(post, range(160))) == {200}
    for i in range(160):
        assert fake_slack.responses(f"pooled-{i}") == [{"text": str(i)}]
    assert fake_slack.connections - before <= 8


def test_a_connection_dropped_while_idle_is_replaced_and_errors_look_like_urllibs() -> None:
    """The server closes each connection after answering, unannounced: the next post goes out on a new
    one. A refused connection is a URLError, an answer outside 2xx an HTTPError with its body."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    statuses = iter([200, 200, 503])

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            accepted.append(1)
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                status = next(statuses)
                body = b'{"ok": true}' if status == 200 else b'{"ok": false}'
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    pool = ConnectionPool()
    url = f"http://127.0.0.1:{port}/response/dropped"
    assert pool.open(Request(url, data=b"{}", method="POST"), 5).read() == b'{"ok": true}'
    assert pool.open(Request(url, data=b"{}", method="POST"), 5).read() == b'{"ok": true}'
    with pytest.raises(HTTPError) as refused:
        pool.open(Request(url, data=b"{}", method="POST"), 5)
    assert (refused.value.code, refused.value.read()) == (503, b'{"ok": false}')
    server.join(5)
    listener.close()
    assert len(accepted) == 3
    with pytest.raises(URLError):
        pool.open(Request(f"http://127.0.0.1:{free_port()}/x", data=b"{}", method="POST"), 5)


def test_webhook_client_retries_through_the_pool(fake_slack: FakeSlack, settings: Settings) -> None:
    """A response URL answered 500 once is retried by the same handlers as before, over the pool."""
    settings = settings.model_copy(update={"tokens_slack_retry_seconds": 0.01})
    fake_slack.fail("/response/retried", 500)
    client = KeepAliveWebhookClient(
        url=fake_slack.response_url("retried"), timeout=5, retry_handlers=retry_handlers(settings)
    )
    assert client.send_dict({"text": "again"}).status_code == 200
    assert [c.status for c in fake_slack.calls if c.path == "/response/retried"] == [500, 200]
