"""Forms as Slack modals (`views.open`), and a submission's answers read back from the view's state."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import InputBlock, PlainTextInputElement, SectionBlock
from slack_sdk.models.views import View

from bot.forms import Form
from bot.render.common import escape

# The action id of every form field's input; the field's name is its block id.
INPUT_ACTION = "value"


def render_modal(form: Form) -> dict[str, Any]:
    """The modal's view; slack_sdk checks Slack's limits (a 24-character title, at most 100 blocks)."""
    inputs = [
        InputBlock(
            block_id=field.name,
            label=field.label,
            hint=field.hint or None,
            element=PlainTextInputElement(
                action_id=INPUT_ACTION,
                initial_value=field.initial or None,
                multiline=field.multiline,
                max_length=field.max_length,
            ),
        )
        for field in form.fields
    ]
    view = View(
        type="modal",
        callback_id=form.form_id,
        title=form.title,
        submit=form.submit,
        close="Back",
        private_metadata=form.metadata,
        blocks=[SectionBlock(text=escape(form.intro)), *inputs],
    )
    return view.to_dict()


def submitted_values(view: dict[str, Any]) -> dict[str, str]:
    """Each field's text as typed (an emptied field is ""), by field name; other state is ignored."""
    values: dict[str, str] = {}
    state = view.get("state") or {}
    for name, inputs in (state.get("values") or {}).items():
        entry = inputs.get(INPUT_ACTION) if isinstance(inputs, dict) else None
        value = entry.get("value") if isinstance(entry, dict) else None
        values[str(name)] = value if isinstance(value, str) else ""
    return values
