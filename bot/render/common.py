"""The message type every renderer returns, and the pieces all replies share."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.commands import USAGE
from core.domain.models import Page

# Slack rejects a message with more than 50 blocks, a section text or context element over 3,000
# characters, a section field over 2,000 or more than 10 fields, and a header over 150.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_CONTEXT_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER_TEXT = 150
# A confirm dialog's text; and the top-level `text`, which Slack shows in notifications (it truncates
# past 40,000, but nobody reads a notification that long).
MAX_CONFIRM_TEXT = 300
MAX_FALLBACK_TEXT = 4000

# A block already in Slack's JSON form. Replies built on every request (the check) are assembled from
# these: slack_sdk's objects re-validate every attribute through dir() on each to_dict(), which cost
# about 0.6 ms per check reply, a tenth of all the CPU one check takes under load. The same limits
# hold by construction here, and tests/test_render.py parses the output back through slack_sdk's
# validators.
JsonBlock = dict[str, Any]
DIVIDER: JsonBlock = {"type": "divider"}
_CENT = Decimal("0.01")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ENTITY = re.compile(r"&(amp|lt|gt);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">"}
# What stands in for a backtick inside code: it looks alike and cannot close the code span or block.
_BACKTICK_STAND_IN = "\u02cb"
# Every line break and control character, which would break a code table's row or hide in it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """Text from a person or the database, made inert in Slack mrkdwn (and in the `text` fallback).

    Slack reads `<…>` as a mention, a channel-wide ping (`<!channel>`) or a link with any label, and
    `&` as the start of an entity; escaped, they show as typed and do nothing. Renderers call this at
    the point where data meets the bot's own markup, which they keep (bold, emoji, code fences).
    """
    return text.translate(_ESCAPES)


def code(text: str) -> str:
    """`escape(text)` for inside a code span or block: a backtick in the data must not close it."""
    return escape(text.replace("`", _BACKTICK_STAND_IN))


@lru_cache(maxsize=4096)
def code_cell(text: str, width: int | None = None) -> str:
    """One cell of a code table: on one line, cut and padded to `width` characters as typed (Slack shows
    `&amp;` as one character, so the columns still line up), then made safe for the code block.

    Cached: a check's tables repeat a few action types and model names on every row and every check, and
    each cell took three passes over its text."""
    flat = _CONTROL.sub(" ", text)
    if width is not None:
        flat = f"{flat[:width]:<{width}}"
    return code(flat)


def unescape(markdown: str) -> str:
    """Undo `escape`, for showing mrkdwn as plain text (the console)."""
    return _ENTITY.sub(lambda m: _UNESCAPED[m.group(1)], markdown)


@dataclass(frozen=True)
class Reply:
    """A message: `text` is the plain fallback for notifications and screen readers."""

    text: str
    blocks: Sequence[Block | JsonBlock] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        """The message as keyword arguments for `respond`, `chat.postMessage` and `chat.update`."""
        assert len(self.blocks) <= MAX_BLOCKS, "renderers page their output below Slack's block limit"
        blocks = [block if isinstance(block, dict) else block.to_dict() for block in self.blocks]
        return {"text": clip(self.text, MAX_FALLBACK_TEXT), "blocks": blocks}


def section(markdown: str) -> SectionBlock:
    """A markdown section, clipped to what Slack accepts rather than rejected whole."""
    return SectionBlock(text=MarkdownTextObject(text=_clip_section(markdown)))


def section_json(markdown: str) -> JsonBlock:
    """`section(markdown)` as JSON."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip_section(markdown)}}


def fields_json(fields: list[str]) -> JsonBlock:
    """A section of markdown fields (two columns in Slack), each clipped to Slack's limit."""
    assert len(fields) <= MAX_FIELDS, "Slack refuses a section with more than 10 fields"
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": clip(f, MAX_FIELD_TEXT)} for f in fields],
    }


def header_json(text: str) -> JsonBlock:
    """A header line, cut to Slack's 150 characters."""
    return {"type": "header", "text": {"type": "plain_text", "text": text[:MAX_HEADER_TEXT], "emoji": True}}


def context_json(markdown: str) -> JsonBlock:
    """`context(markdown)` as JSON."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(markdown, MAX_CONTEXT_TEXT)}]}


def _clip_section(markdown: str) -> str:
    """A section's text cut to Slack's limit, keeping a code block that was cut closed."""
    if len(markdown) <= MAX_SECTION_TEXT:
        return markdown
    cut = _cut(markdown, MAX_SECTION_TEXT - 8).rstrip().rstrip("`")
    return cut + ("\n…```" if cut.count("```") % 2 else "\n…")


def context(markdown: str) -> ContextBlock:
    """A markdown context line, clipped like a section: one long reason must not make Slack refuse the
    whole message (chat.update would answer invalid_blocks and the buttons would stay)."""
    return ContextBlock(elements=[MarkdownTextObject(text=clip(markdown, MAX_CONTEXT_TEXT))])


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis where it was cut."""
    return text if len(text) <= limit else _cut(text, limit - 2).rstrip() + " …"


def _cut(markdown: str, limit: int) -> str:
    """The first `limit` characters of escaped text, never ending inside an entity (`&am`)."""
    cut = markdown[:limit]
    amp = cut.rfind("&", max(0, limit - 5))
    return cut[:amp] if amp != -1 and ";" not in cut[amp:] else cut


def button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    return ButtonElement(text=label, action_id=action_id, value=value, style=style, confirm=confirm)


def button_json(label: str, action_id: str, value: str) -> JsonBlock:
    """`button(label, action_id, value)` as JSON, for replies built on every request."""
    text = {"type": "plain_text", "text": label, "emoji": True}
    return {"type": "button", "text": text, "action_id": action_id, "value": value}


def actions(*buttons: ButtonElement) -> ActionsBlock:
    return ActionsBlock(elements=list(buttons))


def page_buttons(page: Page, action_id: str, value_for: Callable[[int], str]) -> list[Block]:
    """Previous and Next, where there is such a page, each carrying `value_for(that page's number)`."""
    buttons = []
    if page.has_previous:
        buttons.append(button(":arrow_left: Previous", action_id, value_for(page.number - 1)))
    if page.has_next:
        buttons.append(button("Next :arrow_right:", action_id, value_for(page.number + 1)))
    return [actions(*buttons)] if buttons else []


def tokens(amount: int) -> str:
    return f"{amount:,}"


def signed(amount: int) -> str:
    return f"{amount:+,}" if amount else "0"


def dollars(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,}"


def money(amount: Decimal, unit: str, *, rounded: bool = False) -> str:
    """A profile cost in its unit (TOKENS_COST_UNIT): dollars, or the ledger's cents; `rounded` to the
    whole cent, for totals whose finer digits are only noise."""
    if unit == "dollars":
        return dollars_to_the_cent(amount) if rounded else dollars(amount)
    return f"{amount.quantize(_CENT) if rounded else amount:,}¢"


def dollars_to_the_cent(amount: Decimal) -> str:
    """`dollars` for sums whose scale is finer than a cent, where the extra digits are only noise."""
    return dollars(amount.quantize(_CENT))


def message(text: str) -> Reply:
    """A one-section reply, for refusals and errors: `text` is mrkdwn, any data in it already escaped."""
    return Reply(text=text, blocks=[section(text)])


def render_help(problem: str | None = None) -> Reply:
    """The usage, after the problem with what was typed; both come from core and may echo the text."""
    intro = f"{escape(problem)} Here is what tokens-bot understands:" if problem else "*tokens-bot commands*"
    usage = escape(USAGE)
    return Reply(text=f"{intro}\n{usage}", blocks=[section(intro), section(usage)])


def render_unexpected_error() -> Reply:
    return message(
        ":warning: Something went wrong on our side and nothing was changed. The error is logged;"
        " please try again, and tell the tokens-bot maintainers if it keeps happening."
    )
