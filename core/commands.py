"""Parsing `/tokens` command text into typed commands, with replies that show the right form."""

from __future__ import annotations

import re
from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from core.errors import UsageError

EXAMPLE_UUID = "3f6c1a52-8d1e-4c1b-9a57-2f0e6a9d4b10"
_EMAIL = re.compile(r"^[^@\s<>|]+@[^@\s<>|]+\.[^@\s<>|]+$")
_SLACK_MAILTO = re.compile(r"^<mailto:([^|>]+)(?:\|[^>]*)?>$")
_SLACK_MENTION = re.compile(r"^<[@#!][^>]*>$")

USAGE = """\
`/tokens check <user>` — balance vs ledger, discrepancies, findings, recent operations
`/tokens help` — this list

`<user>` is the user's UUID or email, e.g. `/tokens check ada@example.com`"""


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class HelpCommand(_Command):
    """Show usage; `problem` says what was wrong when help is the answer to a mistake."""

    problem: str | None = None


class CheckCommand(_Command):
    user: UUID | str


Command = HelpCommand | CheckCommand


def parse_user(word: str, command: str) -> UUID | str:
    """A user is named by UUID or email; Slack may wrap emails as `<mailto:...|...>`."""
    mailto = _SLACK_MAILTO.match(word)
    if mailto:
        word = mailto.group(1)
    if _EMAIL.match(word):
        return word
    try:
        return UUID(word)
    except ValueError:
        pass
    example = f"`/tokens {command} {EXAMPLE_UUID}` or `/tokens {command} ada@example.com`"
    if _SLACK_MENTION.match(word):
        raise UsageError(
            f"That names a Slack user or channel; tokens-bot needs the product user's UUID or email,"
            f" e.g. {example}."
        )
    raise UsageError(f"`{_clip(word)}` is neither a UUID nor an email address. Try {example}.")


def _clip(text: str, limit: int = 60) -> str:
    """Echo user text back safely: short, and without backticks that would break the code span."""
    text = text.replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_check(args: list[str]) -> CheckCommand:
    if not args:
        raise UsageError(f"`check` needs a user. Try `/tokens check {EXAMPLE_UUID}`.")
    if len(args) > 1:
        extra = _clip(" ".join(args[1:]))
        raise UsageError(
            f"`check` takes one user, but got extra words: `{extra}`. Try `/tokens check {_clip(args[0])}`."
        )
    return CheckCommand(user=parse_user(args[0], "check"))


def _parse_help(args: list[str]) -> HelpCommand:
    return HelpCommand()


PARSERS: dict[str, Callable[[list[str]], Command]] = {
    "check": _parse_check,
    "help": _parse_help,
}


def parse_command(text: str) -> Command:
    """Read the text after `/tokens`; an unknown or missing subcommand answers with the usage."""
    words = text.split()
    if not words:
        return HelpCommand(problem="You didn't say what to do.")
    name, args = words[0].lower(), words[1:]
    parser = PARSERS.get(name)
    if parser is None:
        return HelpCommand(problem=f"`{_clip(words[0])}` is not a tokens-bot command.")
    return parser(args)
