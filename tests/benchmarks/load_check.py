"""Load: a burst of concurrent signed `/tokens check` requests against `tokens-bot serve` on the 5M-row data.

Run: `python -m tests.benchmarks.load_check --url postgresql://postgres@127.0.0.1:5432/tokens_bench`
(optionally `--workers 2 --threads 4 --reply-threads 4 --pool 4 --concurrency 200 --rounds 3`: without
them, the bot's own defaults for WEB_CONCURRENCY, GUNICORN_THREADS, TOKENS_REPLY_THREADS and
TOKENS_DB_POOL_SIZE).

The load client and the fake Slack that receives the replies share the machine's cores with the bot
and PostgreSQL, so both are kept light: one asyncio loop in this process opens every connection of a
round at once with requests signed beforehand (each has its own response URL, so its own body and
signature: the bot refuses replays), and answers the bot's response_url posts itself. Latencies count
from the start of the burst, not from when each request left, so the client's own queueing cannot
hide in them. Errors: a refused connection, a non-200 ack, a reply that never came within
`--deadline` seconds, or one that is not a check report. On Linux it also reports where the CPU went:
the bot's process tree, the PostgreSQL backends connected to the benchmark's database (other
databases' sessions on a shared server are left out; "whole machine" counts everything), and this
client. The response URLs keep their connections alive, as Slack's do, and the script reports how
many connections the replies came over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from slack_sdk.signature import SignatureVerifier

from core.settings import Settings
from tests.benchmarks.bench_check import percentile
from tests.benchmarks.data import describe, psql_url
from tests.support.bot_process import SIGNING_SECRET, BotProcess, bot_env, free_port

VIEWER = "ULOAD"


def sample_users(url: str, n: int) -> list[str]:
    """`n` random users with a profile: each request reads a different user, as a busy team would."""
    with psycopg.connect(psql_url(url)) as conn:
        rows = conn.execute(
            "SELECT user_id::text FROM user_profiles TABLESAMPLE SYSTEM (5) LIMIT %s", (n,)
        ).fetchall()
    return [r[0] for r in rows]


@dataclass
class Round:
    """One burst's outcome: milliseconds from the burst's start to each ack and each reply."""

    acks: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0


class LoadClient:
    """Fires signed slash commands at the bot and plays Slack's response URLs, on one asyncio loop."""

    def __init__(self, port: int, bot_port: int) -> None:
        self.port = port
        self.bot_port = bot_port
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        # Connections the bot opened to the response URLs, and the posts it sent over them.
        self.connections = 0
        self.posts = 0
        self._open: set[asyncio.StreamWriter] = set()

    def signed_request(self, user_id: str, name: str) -> bytes:
        """A complete HTTP request for `/tokens check <user_id>`, as Slack would send it."""
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": "T1",
                "team_domain": "example",
                "channel_id": "C1",
                "channel_name": "ops",
                "user_id": VIEWER,
                "user_name": VIEWER.lower(),
                "command": "/tokens",
                "text": f"check {user_id}",
                "api_app_id": "A1",
                "response_url": f"http://127.0.0.1:{self.port}/response/{name}",
                "trigger_id": "1.2.3",
            }
        ).encode()
        ts = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
        head = (
            f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{self.bot_port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body

    async def serve_response_urls(self) -> asyncio.Server:
        return await asyncio.start_server(self._response_url, "127.0.0.1", self.port)

    async def _response_url(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Slack's side of response_url posts: read each whole, answer `{"ok": true}`, hand it over.

        The connection is kept alive, as Slack's is, for as long as the bot keeps it open."""
        self.connections += 1
        self._open.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *headers = head.decode("latin-1").split("\r\n")
                length = next(
                    (int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0
                )
                body = await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
                    b'\r\n{"ok": true}'
                )
                await writer.drain()
                self.posts += 1
                self._arrived(request_line.split()[1].removeprefix("/response/"), body)
        finally:
            self._open.discard(writer)
            writer.close()

    async def close_connections(self) -> None:
        """Ends the kept-alive connections, so their handlers finish before the loop does."""
        for writer in list(self._open):
            writer.close()
        await asyncio.sleep(0.1)

    def _arrived(self, name: str, body: bytes) -> None:
        waiter = self._waiting.get(name)
        if waiter is None or waiter.done():
            return
        if b"Working on it" in body:
            return  # the "working…" note of a slow reply; the reply itself follows
        waiter.set_result(body)

    async def burst(self, requests: dict[str, bytes], deadline: float) -> Round:
        """Send every request at once and wait for every ack and reply."""
        loop = asyncio.get_running_loop()
        self._waiting = {name: loop.create_future() for name in requests}
        outcome = Round()
        started = time.monotonic()

        async def one(name: str, request: bytes) -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.bot_port)
                writer.write(request)
                answer = await reader.read()
                writer.close()
                status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b"?"
                if status != b"200":
                    outcome.errors.append(f"ack {status.decode()}")
                    return
                outcome.acks.append((time.monotonic() - started) * 1000)
                body = await asyncio.wait_for(self._waiting[name], deadline)
                outcome.replies.append((time.monotonic() - started) * 1000)
                text = json.dumps(json.loads(body).get("blocks"))
                if "Recent operations" not in text:
                    outcome.errors.append("reply is not a check report")
            except (TimeoutError, OSError, ValueError) as error:
                outcome.errors.append(type(error).__name__)

        await asyncio.gather(*(one(name, request) for name, request in requests.items()))
        outcome.wall = time.monotonic() - started
        return outcome


class CpuMeter:
    """CPU seconds used by the bot's process tree, PostgreSQL's processes and this client (Linux /proc).

    PostgreSQL's share is that of the backends connected to the benchmark's database, so other work on
    a shared server (other databases' sessions, and their ended ones) is not counted; a backend is
    sampled while it lives (`watch`), so one that closes during the run still counts.
    """

    def __init__(self, bot_pid: int, url: str) -> None:
        self.bot_pid = bot_pid
        self.database = str(conninfo_to_dict(psql_url(url)).get("dbname", ""))
        self._backends: dict[int, float] = {}
        try:
            with psycopg.connect(psql_url(url)) as conn:
                data_dir = conn.execute("SHOW data_directory").fetchone()
            pid_file = Path(str(data_dir[0] if data_dir else "")) / "postmaster.pid"
            self.postmaster: int | None = int(pid_file.read_text().split()[0])
        except (psycopg.Error, OSError, ValueError):
            self.postmaster = None  # a remote server, or a role that may not read the data directory
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @property
    def available(self) -> bool:
        return Path("/proc/self/stat").exists() and self.postmaster is not None

    def _times(self, pid: int, *, reaped: bool) -> float:
        """utime + stime, plus those of exited children waited for (PostgreSQL's closed backends)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
        return used / self.tick

    def _tree(self, root: int) -> float:
        """`root` and its children: gunicorn's master and workers, or the postmaster and its backends."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        return self._times(root, reaped=True) + sum(
            self._times(c, reaped=True) for c in children.get(root, [])
        )

    def watch(self) -> float:
        """CPU seconds of the database's backends, each at the last time it was seen alive."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").split()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            # A backend calls itself "postgres: [<cluster name>:] <role> <database> <client> <state>".
            named = command[2:4] if command[1:2] and command[1].endswith(":") else command[2:3]
            if ppid == self.postmaster and command[:1] == ["postgres:"] and self.database in named:
                self._backends[int(entry.name)] = self._times(int(entry.name), reaped=False)
        return sum(self._backends.values())

    def sample(self) -> dict[str, float]:
        assert self.postmaster is not None
        return {
            "bot (gunicorn)": self._tree(self.bot_pid),
            "PostgreSQL": self.watch(),
            "load client + fake Slack": self._times(os.getpid(), reaped=False),
        }


async def run(args: argparse.Namespace, bot: BotProcess, client: LoadClient, users: list[str]) -> None:
    server = await client.serve_response_urls()
    meter = CpuMeter(bot.process.pid, args.url)
    batches = [users[i * args.concurrency : (i + 1) * args.concurrency] for i in range(args.rounds + 1)]
    rounds: list[Round] = []
    before: dict[str, float] = {}
    busy_before = _machine_busy()
    for number, batch in enumerate(batches):
        # Signed just before their burst: Slack's signatures are only valid for five minutes.
        requests = {
            f"r{number}u{i}": client.signed_request(user, f"r{number}u{i}") for i, user in enumerate(batch)
        }
        watching = asyncio.create_task(_watch(meter))
        outcome = await client.burst(requests, args.deadline)
        watching.cancel()
        if number == 0:  # warm-up: pools connect, the product schema is inspected, statements prepared
            await asyncio.sleep(0.5)
            before = meter.sample() if meter.available else {}
            busy_before = _machine_busy()
            continue
        rounds.append(outcome)
    after = meter.sample() if meter.available else {}
    busy_after = _machine_busy()
    await client.close_connections()
    server.close()
    report(args, rounds, before, after, busy_after - busy_before)
    print(
        f"  replies posted over {client.connections} connection(s) ({client.posts} posts, warm-up included)"
    )


async def _watch(meter: CpuMeter) -> None:
    """Samples the database's backends during a burst, so none that ends meanwhile goes uncounted."""
    while meter.available:
        meter.watch()
        await asyncio.sleep(0.25)


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (Linux), 0 where unknown."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(values) - values[3] - values[4]) / (
        os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    )


def report(
    args: argparse.Namespace,
    rounds: list[Round],
    before: dict[str, float],
    after: dict[str, float],
    busy: float,
) -> None:
    total = args.concurrency * args.rounds
    acks = [a for r in rounds for a in r.acks]
    replies = [a for r in rounds for a in r.replies]
    errors = [e for r in rounds for e in r.errors]
    walls = [r.wall for r in rounds]
    print(
        f"{args.rounds} bursts of {args.concurrency} concurrent /tokens check: {total} requests, {len(errors)} errors"
    )
    if errors:
        print(f"  errors: {sorted(set(errors))}")
    print(
        f"  throughput   {len(replies) / sum(walls):7.1f} replies/s"
        f" (each burst fully answered in {min(walls):.2f}-{max(walls):.2f} s)"
    )
    for label, samples in (("ack (HTTP)", acks), ("reply", replies)):
        if samples:
            print(
                f"  {label:<12} p50 {percentile(samples, 50):7.1f} ms   p95 {percentile(samples, 95):7.1f} ms"
                f"   p99 {percentile(samples, 99):7.1f} ms   max {max(samples):7.1f} ms"
            )
    if after:
        print(
            f"  CPU per request (all {os.cpu_count()} cores, measured rounds; PostgreSQL: this database's backends):"
        )
        for name in after:
            print(f"    {name:<26} {(after[name] - before[name]) / total * 1000:6.2f} ms")
        print(f"    {'whole machine':<26} {busy / total * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    # The bot's own defaults, so a run without these flags measures the bot as it is deployed.
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    parser.add_argument("--workers", type=int, default=defaults["web_concurrency"])
    parser.add_argument("--threads", type=int, default=defaults["gunicorn_threads"])
    parser.add_argument("--pool", type=int, default=defaults["tokens_db_pool_size"])
    parser.add_argument("--reply-threads", type=int, default=defaults["tokens_reply_threads"])
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds a reply may take")
    args = parser.parse_args()
    data = describe(args.url)
    if data is None:
        raise SystemExit("no benchmark data: run python -m tests.benchmarks.data first")
    users = sample_users(args.url, args.concurrency * (args.rounds + 1))
    if len(users) < args.concurrency * (args.rounds + 1):
        raise SystemExit(f"only {len(users)} users sampled; lower --concurrency or --rounds")
    port = free_port()
    env = bot_env(
        args.url,
        f"http://127.0.0.1:{port}/api/",
        TOKENS_VIEWERS=VIEWER,
        WEB_CONCURRENCY=str(args.workers),
        GUNICORN_THREADS=str(args.threads),
        TOKENS_DB_POOL_SIZE=str(args.pool),
        TOKENS_REPLY_THREADS=str(args.reply_threads),
    )
    bot = BotProcess(env, Path(tempfile.mkdtemp()) / "bot.log")
    print(
        f"data: {data.users:,} users, {data.rows:,} ledger rows; bot: {args.workers} workers x {args.threads}"
        f" threads, {args.reply_threads} reply threads and a pool of {args.pool}+{args.pool} per worker"
    )
    try:
        asyncio.run(run(args, bot, LoadClient(port, bot.port), users))
    finally:
        bot.stop()


if __name__ == "__main__":
    main()
