"""The message type every renderer returns, and the pieces all replies share."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
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

from core.commands import USAGE

# Slack rejects a message with more than 50 blocks, and a section text or context element over 3,000
# characters.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_CONTEXT_TEXT = 3000


@dataclass(frozen=True)
class Reply:
    """A message: `text` is the plain fallback for notifications and screen readers."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        """The message as keyword arguments for `respond`, `chat.postMessage` and `chat.update`."""
        assert len(self.blocks) <= MAX_BLOCKS, "renderers page their output below Slack's block limit"
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


def section(markdown: str) -> SectionBlock:
    """A markdown section, clipped to what Slack accepts rather than rejected whole."""
    if len(markdown) > MAX_SECTION_TEXT:
        markdown = markdown[: MAX_SECTION_TEXT - 4].rstrip() + "\n…"
        if markdown.count("```") % 2:
            markdown = markdown[: MAX_SECTION_TEXT - 8] + "\n…```"
    return SectionBlock(text=MarkdownTextObject(text=markdown))


def context(markdown: str) -> ContextBlock:
    """A markdown context line, clipped like a section: one long reason must not make Slack refuse the
    whole message (chat.update would answer invalid_blocks and the buttons would stay)."""
    return ContextBlock(elements=[MarkdownTextObject(text=clip(markdown, MAX_CONTEXT_TEXT))])


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 2].rstrip() + " …"


def button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    return ButtonElement(text=label, action_id=action_id, value=value, style=style, confirm=confirm)


def actions(*buttons: ButtonElement) -> ActionsBlock:
    return ActionsBlock(elements=list(buttons))


def tokens(amount: int) -> str:
    return f"{amount:,}"


def signed(amount: int) -> str:
    return f"{amount:+,}" if amount else "0"


def dollars(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,}"


def message(text: str) -> Reply:
    """A one-section reply, for refusals and errors."""
    return Reply(text=text, blocks=[section(text)])


def render_help(problem: str | None = None) -> Reply:
    intro = f"{problem} Here is what tokens-bot understands:" if problem else "*tokens-bot commands*"
    return Reply(text=f"{intro}\n{USAGE}", blocks=[section(intro), section(USAGE)])


def render_unexpected_error() -> Reply:
    return message(
        ":warning: Something went wrong on our side and nothing was changed. The error is logged;"
        " please try again, and tell the tokens-bot maintainers if it keeps happening."
    )
