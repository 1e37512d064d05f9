"""The Slack port inside the local console: nothing leaves the machine."""

from __future__ import annotations

from collections.abc import Callable

from bot.render.common import Reply
from core.domain.approvals import Person


class ConsoleSlack:
    """The Slack port inside the console: what the bot would post is printed, and its buttons can be pressed.

    The console has no Slack directory, so people get placeholder emails under the reserved `.invalid`
    domain, which no product user can have, unless `as U123 email` gave them one.
    """

    def __init__(self, show: Callable[[str, Reply], None]) -> None:
        self.show = show
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
        where = f"in the thread of message {thread_ts} in {channel}" if thread_ts else f"to {channel}"
        self.show(f"--- posted {where} (message {ts}) ---", reply)
        return ts

    def update(self, channel: str, ts: str, reply: Reply) -> bool:
        self.show(f"--- message {ts} in {channel} updated ---", reply)
        return True

    def notify(self, user_id: str, reply: Reply) -> None:
        self.show(f"--- direct message to {user_id} ---", reply)
