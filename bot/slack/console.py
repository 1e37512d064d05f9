"""The Slack port inside the local console: nothing leaves the machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.render.common import Reply, escape, message
from core.domain.approvals import Person


class ConsoleSlack:
    """The Slack port inside the console: what the bot would post is printed, and its buttons can be pressed.

    The console has no Slack directory, so people get placeholder emails under the reserved `.invalid`
    domain, which no product user can have, unless `as U123 email` gave them one. Files (charts) are
    written under `files_dir` (the data directory's `charts/`), and their path shown; without one, an
    upload is refused as Slack would refuse it.
    """

    def __init__(self, show: Callable[[str, Reply], None], files_dir: Path | None = None) -> None:
        self.show = show
        self.files_dir = files_dir
        self.emails: dict[str, str] = {}
        self._messages = 0

    def person(self, user_id: str) -> Person:
        return Person(
            slack_id=user_id,
            name=user_id,
            email=self.emails.get(user_id, f"{user_id.lower()}@console.invalid"),
        )

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str | None:
        self._messages += 1
        ts = f"console.{self._messages}"
        self.show(f"--- posted {_where(channel, thread_ts)} (message {ts}) ---", reply)
        return ts

    def update(self, channel: str, ts: str, reply: Reply) -> bool:
        self.show(f"--- message {ts} in {channel} updated ---", reply)
        return True

    def notify(self, user_id: str, reply: Reply) -> None:
        self.show(f"--- direct message to {user_id} ---", reply)

    def direct_channel(self, user_id: str) -> str | None:
        return f"D{user_id}"

    def upload(
        self, channel: str, filename: str, content: bytes, title: str, *, thread_ts: str | None = None
    ) -> bool:
        if self.files_dir is None:
            return False
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / Path(filename).name  # only ever a name inside the directory
        path.write_bytes(content)
        self.show(
            f"--- file uploaded {_where(channel, thread_ts)} ---",
            message(f"{escape(title)}: saved as `{escape(str(path.resolve()))}`"),
        )
        return True


def _where(channel: str, thread_ts: str | None) -> str:
    return f"in the thread of message {thread_ts} in {channel}" if thread_ts else f"to {channel}"
