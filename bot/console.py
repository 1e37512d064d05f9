"""The local console: type slash commands as a chosen Slack user and read the replies as plain text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TextIO

from bot.handlers import reply_to_action, reply_to_command
from bot.render.common import Reply, unescape
from core.domain.approvals import Person
from core.services.service import TokensService

PROMPT_HELP = """\
Type a slash command as Slack would send it, e.g. `/tokens check reconciled@demo.example`.
Press a button by typing its number; messages the bot posts (approval requests, direct messages)
are shown too, and their buttons can be pressed the same way. `as U123` switches the Slack user
(`as U123 bea@example.com` also gives them an email). `quit` leaves."""

_EMOJI = re.compile(r":[a-z][a-z0-9_+-]*:")


def blocks_as_text(blocks: list[dict[str, Any]], *, first: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """Render Block Kit as readable text, numbering the buttons from `first` so they can be pressed by typing."""
    lines: list[str] = []
    buttons: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            title = _EMOJI.sub("", block["text"]["text"]).strip()
            lines += ["", f"== {title} =="]
        elif kind == "section":
            if "text" in block:
                lines.append(_plain(block["text"]["text"]))
            for field in block.get("fields", []):
                lines.append(_plain(field["text"]).replace("\n", " | "))
            accessory = block.get("accessory") or {}
            if accessory.get("type") == "button":
                # A list row's own button (e.g. Check), shown right under the row it belongs to.
                buttons.append(accessory)
                lines.append(f"    [{first + len(buttons) - 1}] {_plain(accessory['text']['text'])}")
        elif kind == "context":
            lines.append(" ".join(_plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "divider":
            lines.append("-" * 60)
        elif kind == "actions":
            for element in block["elements"]:
                if element.get("type") == "button":
                    buttons.append(element)
                    lines.append(f"[{first + len(buttons) - 1}] {_plain(element['text']['text'])}")
    return "\n".join(lines), buttons


def _plain(markdown: str) -> str:
    """mrkdwn as a terminal shows it: no emoji codes, fences or bold marks, and escaped data as typed."""
    return unescape(_EMOJI.sub("", markdown).replace("```", "").replace("*", "").strip())


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


def run_console(
    service: TokensService, actor: str, *, read: Callable[[str], str] = input, out: TextIO | None = None
) -> None:
    """A read-eval-print loop over the same handlers the Slack listeners use."""
    import sys

    stream = out or sys.stdout
    # The buttons of everything shown since the last command or press, numbered in the order shown.
    buttons: list[dict[str, Any]] = []

    def show(reply: Reply) -> None:
        text, shown = blocks_as_text(reply.as_kwargs()["blocks"], first=len(buttons) + 1)
        buttons.extend(shown)
        print(text, file=stream, flush=True)

    def show_posted(banner: str, reply: Reply) -> None:
        print(f"\n{banner}", file=stream)
        show(reply)

    slack = ConsoleSlack(show_posted)
    print(PROMPT_HELP, file=stream)
    while True:
        try:
            line = read(f"\n{actor}> ").strip()
        except EOFError:
            return
        if line in ("quit", "exit"):
            return
        if line.startswith("as "):
            words = line[3:].split()
            actor = words[0] if words else actor
            if len(words) > 1:
                slack.emails[actor] = words[1]
            print(f"You are now Slack user {actor}.", file=stream)
        elif line.isdigit() and 1 <= int(line) <= len(buttons):
            pressed = buttons[int(line) - 1]
            buttons.clear()
            answer = reply_to_action(
                service, actor, pressed["action_id"], pressed.get("value", ""), slack=slack
            )
            show(answer.reply)
        elif line.startswith("/tokens"):
            buttons.clear()
            show(reply_to_command(service, actor, line[len("/tokens") :], slack=slack))
        elif line:
            print("Commands start with /tokens; type `/tokens help` for the list.", file=stream)
