"""Forms (Slack modals): what each asks, and the command a filled-in form becomes, read by the commands'
own parsers so a form and a typed command accept and refuse exactly the same input.

Opening a form and reading its answers touch no database: Slack gives 3 seconds to open a modal after a
click and to answer a submission, so both happen before the ack; the command then runs like a typed one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot import buttons
from bot.buttons import ADJUST_ACTION, REJECT_ACTION, AdjustButton, RequestButton
from bot.command_models import AdjustCommand, AdjustFormCommand, Command, RejectCommand
from bot.commands import FieldError, parse_command, read_adjust, read_reject_reason
from bot.render.common import unescape
from core.domain.errors import TokensBotError, UsageError
from core.settings import Settings

ADJUST_FORM = "adjust_form"
REJECT_FORM = "reject_form"
# Slack's limits on a plain-text input's value.
MAX_USER_LENGTH = 256
MAX_DELTA_LENGTH = 40
MAX_REASON_LENGTH = 2000


class Field(BaseModel):
    """One text input: `name` is its block id, so Slack shows an error on the field it belongs to."""

    model_config = ConfigDict(frozen=True)

    name: str
    label: str
    initial: str = ""
    hint: str = ""
    multiline: bool = False
    max_length: int


class Form(BaseModel):
    """A modal: its id comes back with the submission, `metadata` (a button value) with it."""

    model_config = ConfigDict(frozen=True)

    form_id: str
    title: str
    submit: str
    intro: str
    fields: tuple[Field, ...]
    metadata: str = ""


class FormErrors(UsageError):
    """A submission that does not read: a message per field, shown under it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def adjust_form(user: str = "") -> Form:
    return Form(
        form_id=ADJUST_FORM,
        title="Adjust tokens",
        submit="Ask for approval",
        intro="Ask for a grant or a deduction; a second person approves it before anything changes.",
        fields=(
            Field(
                name="user",
                label="User",
                initial=user,
                hint="The product user's UUID or email",
                max_length=MAX_USER_LENGTH,
            ),
            Field(
                name="delta",
                label="Delta",
                hint="+50k grants, -1200 deducts: +50000, -1,200, 50_000, 1.5M",
                max_length=MAX_DELTA_LENGTH,
            ),
            Field(
                name="reason",
                label="Reason",
                hint="Recorded in the ledger row and the audit trail",
                multiline=True,
                max_length=MAX_REASON_LENGTH,
            ),
        ),
    )


def reject_form(request_id: int) -> Form:
    return Form(
        form_id=REJECT_FORM,
        title=f"Reject request #{request_id}"[:24],
        submit="Reject",
        intro=f"Request #{request_id} will be closed without changing anything. Say why: the reason is"
        " recorded in the audit trail and shown on the request.",
        fields=(Field(name="reason", label="Reason", multiline=True, max_length=MAX_REASON_LENGTH),),
        metadata=RequestButton(r=request_id).encode(),
    )


# Buttons that open a form instead of acting at once.
FORM_ACTIONS = frozenset({REJECT_ACTION, ADJUST_ACTION})


def form_for_action(action_id: str, value: str) -> Form:
    """The form a button opens; a damaged value raises DamagedButtonError as any button's would."""
    if action_id == REJECT_ACTION:
        return reject_form(buttons.read(RequestButton, value).r)
    return adjust_form(buttons.read(AdjustButton, value).u)


def form_for_command(settings: Settings, actor: str, text: str) -> Form | None:
    """The form a slash command opens (`/tokens adjust` alone, for an admin), or None: answer it as typed."""
    try:
        command = parse_command(unescape(text))
    except TokensBotError:
        return None
    if isinstance(command, AdjustFormCommand) and settings.may_ask(actor):
        return adjust_form()
    return None


def read_form(form_id: str, metadata: str, values: dict[str, str]) -> Command:
    """A submitted form as the command it stands for; FormErrors names the fields that do not read."""
    try:
        if form_id == ADJUST_FORM:
            return _read_adjust(values)
        if form_id == REJECT_FORM:
            request = buttons.read(RequestButton, metadata)
            return RejectCommand(request_id=request.r, reason=read_reject_reason(values.get("reason", "")))
    except FieldError as exc:
        raise FormErrors({exc.field: str(exc)}) from exc
    raise UsageError("That form is no longer supported; run the command again.")


def _read_adjust(values: dict[str, str]) -> AdjustCommand:
    return read_adjust(values.get("user", ""), values.get("delta", ""), values.get("reason", ""))
