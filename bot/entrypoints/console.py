"""The local console: type slash commands as a chosen Slack user and read the replies as plain text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from bot.command_models import Command
from bot.forms import FORM_ACTIONS, Form, FormErrors, form_for_action, form_for_command, read_form
from bot.render.common import Reply, message
from bot.render.text import blocks_as_text
from bot.routes import reply_to_action, reply_to_command, reply_to_form
from bot.slack.console import ConsoleSlack
from core.domain.errors import TokensBotError
from core.services.service import TokensService

PROMPT_HELP = """\
Type a slash command as Slack would send it, e.g. `/tokens check reconciled@demo.example`.
Press a button by typing its number; messages the bot posts (approval requests, direct messages)
are shown too, and their buttons can be pressed the same way. A form (Slack's modal) is asked field by
field: Enter keeps the value shown in brackets, `cancel` closes it. `as U123` switches the Slack user
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
            action_id, value = pressed["action_id"], pressed.get("value", "")
            if action_id in FORM_ACTIONS:
                try:
                    form = form_for_action(action_id, value)
                except TokensBotError as exc:
                    show(message(str(exc)))
                    continue
                command = fill_form(form, read, stream)
                if command is not None:
                    show(reply_to_form(service, actor, command, slack=slack))
                continue
            show(reply_to_action(service, actor, action_id, value, slack=slack).reply)
        elif line.startswith("/tokens"):
            buttons.clear()
            text = line[len("/tokens") :]
            opened = form_for_command(service.settings, actor, text)
            if opened is None:
                show(reply_to_command(service, actor, text, slack=slack))
            elif (command := fill_form(opened, read, stream)) is not None:
                show(reply_to_form(service, actor, command, slack=slack))
        elif line:
            print("Commands start with /tokens; type `/tokens help` for the list.", file=stream)


def fill_form(form: Form, read: Callable[[str], str], out: TextIO) -> Command | None:
    """A modal as a numbered form: each field asked in turn, the wrong ones again with their error, as
    Slack shows them on the field. None when the person typed `cancel` or the input ended."""
    print(f"\n== {form.title} ==\n{form.intro}", file=out)
    values = {field.name: field.initial for field in form.fields}
    asked = list(form.fields)
    while True:
        for number, field in enumerate(form.fields, start=1):
            if field not in asked:
                continue
            shown = f" [{values[field.name]}]" if values[field.name] else ""
            hint = f" ({field.hint})" if field.hint else ""
            try:
                typed = read(f"{number}. {field.label}{hint}{shown}: ").strip()
            except EOFError:
                return None
            if typed == "cancel":
                print("Form closed; nothing was done.", file=out)
                return None
            values[field.name] = typed or values[field.name]
        try:
            return read_form(form.form_id, form.metadata, values)
        except FormErrors as exc:
            for name, error in exc.errors.items():
                print(f"  ! {name}: {error}", file=out)
            asked = [field for field in form.fields if field.name in exc.errors]
        except TokensBotError as exc:
            print(str(exc), file=out)
            return None
