"""Running the real `tokens-bot serve` in a subprocess, as a deployment would, for HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """One `tokens-bot serve` process tree (gunicorn master and workers) on a free loopback port."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *, argv: list[str] | None = None, new_session: bool = False
    ) -> None:
        """Start `argv` (by default this interpreter's `bot.entrypoints.cli serve`) and wait for /healthz to
        answer; `new_session` puts the tree in a process group of its own, for `kill`."""
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            argv or [sys.executable, "-m", "bot.entrypoints.cli", "serve"],
            env={**os.environ, **env, "PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        self.wait_healthy()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tokens-bot serve exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"tokens-bot serve never became healthy:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole tree at once, as a crash or an evicted pod would end it: no cleanup runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def bot_env(database_url: str, slack_api_url: str, **extra: str) -> dict[str, str]:
    """The environment a test deployment runs with; the names are DESIGN.md's runtime contract."""
    return {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "TOKENS_ADMINS": "UADMIN1,UADMIN2",
        "TOKENS_VIEWERS": "UVIEWER",
        "TOKENS_APPROVALS_CHANNEL": "CAPPROVALS",
        "WEB_CONCURRENCY": "2",
        # Tests fire commands faster than any person; the limit has tests of its own.
        "TOKENS_RATE_LIMIT_PER_MINUTE": "100000",
        **extra,
    }
