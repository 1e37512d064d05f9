"""The bot's own work per `/tokens check`, in one process: signature gate, Bolt, listener, reply thread,
check, render, the reply posted to its response URL. No gunicorn, no load client in the same process.

Run: `python -m tests.benchmarks.bot_requests --url postgresql://postgres@127.0.0.1:5432/tokens_bench`
(`--warm-up 20 --requests 200`). It prints the process's CPU per request. CPU time moves with whatever
else the machine runs; instructions do not, so on a shared machine count them, as the README does:
run it under `valgrind --tool=callgrind` with `--requests 20` and `--requests 120` (the same warm-up)
and divide the difference of the two totals by 100. The fake Slack answering the response URLs runs in
a child process, so its work is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from bot.bootstrap import build_service
from bot.entrypoints.http import TokensWsgi
from core.settings import Settings
from tests.benchmarks.data import psql_url
from tests.benchmarks.load_check import VIEWER, LoadClient
from tests.support.bot_process import bot_env, free_port


def _serve_response_urls(port: int) -> None:
    """The child: answers every response_url post until its parent goes away."""

    async def serve() -> None:
        await LoadClient(port, 0).serve_response_urls()
        print("ready", flush=True)
        parent = os.getppid()
        while os.getppid() == parent:
            await asyncio.sleep(0.5)

    asyncio.run(serve())


def _environ(request: bytes) -> dict[str, Any]:
    """The WSGI environ gunicorn would build for one of LoadClient's signed requests."""
    head, body = request.split(b"\r\n\r\n", 1)
    first, *lines = head.decode().split("\r\n")
    method, path, _ = first.split()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(body),
    }
    for line in lines:
        name, value = line.split(": ", 1)
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--reply-threads", type=int, default=1)
    parser.add_argument("--serve-response-urls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_response_urls:
        _serve_response_urls(args.serve_response_urls)
        return
    port = free_port()
    os.environ.update(
        bot_env(
            args.url,
            f"http://127.0.0.1:{port}/api/",
            TOKENS_VIEWERS=VIEWER,
            TOKENS_DB_POOL_SIZE="2",
            TOKENS_REPLY_THREADS=str(args.reply_threads),
        )
    )
    slack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bot_requests",
            "--url",
            args.url,
            "--serve-response-urls",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert slack.stdout is not None and slack.stdout.readline() == b"ready\n"
        total = args.warm_up + args.requests
        with psycopg.connect(psql_url(args.url)) as conn:
            # The same users every run, so two runs (or two commits) read the same rows.
            users = [
                str(r[0])
                for r in conn.execute(
                    "SELECT user_id::text FROM user_profiles ORDER BY md5(user_id::text) LIMIT %s", (total,)
                )
            ]
        wsgi = TokensWsgi(build_service(Settings(), args.url))
        client = LoadClient(port, 3000)
        environs = [_environ(client.signed_request(user, f"b{i}")) for i, user in enumerate(users)]

        def acked(status: str, headers: list[tuple[str, str]]) -> None:
            assert status.startswith("200"), status

        for environ in environs[: args.warm_up]:
            b"".join(wsgi(environ, acked))
        while wsgi.listeners._work_queue.qsize():  # the warm-up's replies are sent before measuring
            time.sleep(0.05)
        time.sleep(0.5)
        before, cpu = os.times(), time.process_time()
        for environ in environs[args.warm_up :]:
            b"".join(wsgi(environ, acked))
        wsgi.listeners.shutdown(wait=True)
        cpu, after = time.process_time() - cpu, os.times()
        n = args.requests
        print(
            f"{n} checks: {cpu / n * 1000:.3f} ms CPU per request"
            f" (user {(after.user - before.user) / n * 1000:.3f}, system {(after.system - before.system) / n * 1000:.3f})"
        )
    finally:
        slack.terminate()


if __name__ == "__main__":
    main()
