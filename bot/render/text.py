"""Block Kit as plain text, for the console and the jobs that print a message instead of posting it."""

from __future__ import annotations

import re
from typing import Any

from bot.render.common import unescape

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
