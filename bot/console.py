"""The local console: type slash commands as a chosen Slack user and read the replies as plain text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TextIO

from bot.handlers import reply_to_action, reply_to_command
from bot.render.common import Reply
from core.service import TokensService

PROMPT_HELP = """\
Type a slash command as Slack would send it, e.g. `/tokens check reconciled@demo.example`.
Press a button by typing its number. `as U123` switches the Slack user. `quit` leaves."""

_EMOJI = re.compile(r":[a-z][a-z0-9_+-]*:")


def blocks_as_text(blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Render Block Kit as readable text, numbering the buttons so they can be pressed by typing."""
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
        elif kind == "context":
            lines.append(" ".join(_plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "divider":
            lines.append("-" * 60)
        elif kind == "actions":
            for element in block["elements"]:
                if element.get("type") == "button":
                    buttons.append(element)
                    lines.append(f"[{len(buttons)}] {_plain(element['text']['text'])}")
    return "\n".join(lines), buttons


def _plain(markdown: str) -> str:
    return _EMOJI.sub("", markdown).replace("```", "").replace("*", "").strip()


def run_console(
    service: TokensService, actor: str, *, read: Callable[[str], str] = input, out: TextIO | None = None
) -> None:
    """A read-eval-print loop over the same handlers the Slack listeners use."""
    import sys

    stream = out or sys.stdout
    buttons: list[dict[str, Any]] = []

    def show(reply: Reply) -> None:
        nonlocal buttons
        text, buttons = blocks_as_text([b.to_dict() for b in reply.blocks])
        print(text, file=stream, flush=True)

    print(PROMPT_HELP, file=stream)
    while True:
        try:
            line = read(f"\n{actor}> ").strip()
        except EOFError:
            return
        if line in ("quit", "exit"):
            return
        if line.startswith("as "):
            actor = line[3:].strip() or actor
            print(f"You are now Slack user {actor}.", file=stream)
        elif line.isdigit() and 1 <= int(line) <= len(buttons):
            pressed = buttons[int(line) - 1]
            show(reply_to_action(service, actor, pressed["action_id"], pressed.get("value", "")))
        elif line.startswith("/tokens"):
            show(reply_to_command(service, actor, line[len("/tokens") :]))
        elif line:
            print("Commands start with /tokens; type `/tokens help` for the list.", file=stream)
