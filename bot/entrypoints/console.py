"""The local console: type slash commands as a chosen Slack user and read the replies as plain text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from bot.render.common import Reply
from bot.render.text import blocks_as_text
from bot.routes import reply_to_action, reply_to_command
from bot.slack.console import ConsoleSlack
from core.services.service import TokensService

PROMPT_HELP = """\
Type a slash command as Slack would send it, e.g. `/tokens check reconciled@demo.example`.
Press a button by typing its number; messages the bot posts (approval requests, direct messages)
are shown too, and their buttons can be pressed the same way. `as U123` switches the Slack user
(`as U123 bea@example.com` also gives them an email). `quit` leaves."""


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

    # Charts are written under the data directory: the console's "direct message" is a file to open.
    slack = ConsoleSlack(show_posted, service.settings.tokens_data_dir / "charts")
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
