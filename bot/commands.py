"""Parsing `/tokens` command text into typed commands, with replies that show the right form."""

from __future__ import annotations

import re
from collections.abc import Callable
from uuid import UUID

from bot.amounts import EXAMPLES, parse_amount
from bot.command_models import (
    CHART_DAYS_DEFAULT,
    CHART_DAYS_MAX,
    TOP_MAX,
    AdjustCommand,
    AdjustFormCommand,
    CancelCommand,
    ChartCommand,
    CheckCommand,
    Command,
    DiscrepanciesCommand,
    HelpCommand,
    HistoryCommand,
    LowBalanceCommand,
    ReconcileCommand,
    RejectCommand,
    RequestsCommand,
    TopCommand,
)
from core.domain.errors import UsageError
from core.domain.fixes import Cause

EXAMPLE_UUID = "3f6c1a52-8d1e-4c1b-9a57-2f0e6a9d4b10"
_EMAIL = re.compile(r"^[^@\s<>|]+@[^@\s<>|]+\.[^@\s<>|]+$")
_SLACK_MAILTO = re.compile(r"^<mailto:([^|>]+)(?:\|[^>]*)?>$")
_SLACK_MENTION = re.compile(r"^<[@#!][^>]*>$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

USAGE = """\
`/tokens check <user>` — balance vs ledger, discrepancies, findings, recent operations
`/tokens chart <user> [days]` — a picture of the user's daily usage and balance (default 90 days), sent to you alone
`/tokens adjust <user> <delta> <reason>` — ask for a grant (`+50k`) or deduction (`-1200`); a second person approves; `/tokens adjust` alone opens a form
`/tokens reconcile <user> [initial_grant]` — expected balance from the ledger, and a correction to approve
`/tokens requests` — pending grants, deductions and corrections, with their buttons
`/tokens history <user>` — every request, decision, correction and ledger entry tokens-bot made for the user
`/tokens reject <request> <reason>` — reject a pending request, recording why
`/tokens cancel <request>` — withdraw your own pending request
`/tokens lowbalance [threshold]` — users under the threshold (default 10k), lowest first, with a burn forecast
`/tokens discrepancies [min] [cause]` — users whose balance and ledger disagree by more than `min` (default 100), grouped by cause, with a fix for each group
`/tokens top [n]` — the `n` highest lifetime users (default 20, at most 100), with cost
`/tokens help` — this list

`<user>` is the user's UUID or email, e.g. `/tokens check ada@example.com`"""


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


def _one_user(args: list[str], command: str) -> UUID | str:
    """The single user `check` and `history` take."""
    if not args:
        raise UsageError(f"`{command}` needs a user. Try `/tokens {command} {EXAMPLE_UUID}`.")
    if len(args) > 1:
        extra = _clip(" ".join(args[1:]))
        raise UsageError(
            f"`{command}` takes one user, but got extra words: `{extra}`."
            f" Try `/tokens {command} {_clip(args[0])}`."
        )
    return parse_user(args[0], command)


def _parse_check(args: list[str]) -> CheckCommand:
    return CheckCommand(user=_one_user(args, "check"))


def _parse_history(args: list[str]) -> HistoryCommand:
    return HistoryCommand(user=_one_user(args, "history"))


def _parse_chart(args: list[str]) -> ChartCommand:
    """A user and optionally how many days back (`30` or `30d`), at most a leap year."""
    example = "`/tokens chart ada@example.com` or `/tokens chart ada@example.com 30`"
    if not args or len(args) > 2:
        raise UsageError(f"`chart` takes a user and optionally a number of days, e.g. {example}.")
    user = parse_user(args[0], "chart")
    if len(args) == 1:
        return ChartCommand(user=user)
    word = args[1].lower().removesuffix("d")
    if not word.isascii() or not word.isdigit():
        raise UsageError(f"`{_clip(args[1])}` is not a number of days; e.g. {example}.")
    days = int(word) if len(word) <= 6 else CHART_DAYS_MAX + 1  # no 5,000-digit int() for a typo
    if not 1 <= days <= CHART_DAYS_MAX:
        raise UsageError(
            f"A chart covers 1 to {CHART_DAYS_MAX} days; you asked for {_clip(word)}. Try `/tokens chart"
            f" {_clip(args[0])} {CHART_DAYS_DEFAULT}`."
        )
    return ChartCommand(user=user, days=days)


class FieldError(UsageError):
    """A command's argument that is wrong, naming which one: a form shows the message on that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


ADJUST_EXAMPLE = "`/tokens adjust ada@example.com +50k refund for the outage on 3 May`"


def read_adjust(user: str, delta: str, reason: str) -> AdjustCommand:
    """An adjustment's three parts, typed as a command or into the form, read and refused the same way."""
    if not user.strip() or not delta.strip():
        missing = "user" if not user.strip() else "delta"
        raise FieldError(missing, f"`adjust` needs a user, a delta and a reason, e.g. {ADJUST_EXAMPLE}.")
    try:
        parsed_user = parse_user(user.strip(), "adjust")
    except UsageError as exc:
        raise FieldError("user", str(exc)) from exc
    try:
        parsed_delta = parse_amount(delta)
    except UsageError as exc:
        raise FieldError("delta", str(exc)) from exc
    if not reason.strip():
        raise FieldError(
            "reason",
            "`adjust` needs a reason after the delta: it is recorded in the ledger and the audit trail,"
            f" e.g. {ADJUST_EXAMPLE}.",
        )
    return AdjustCommand(user=parsed_user, delta=parsed_delta, reason=reason.strip())


def _parse_adjust(args: list[str]) -> AdjustCommand | AdjustFormCommand:
    if not args:
        return AdjustFormCommand()
    if len(args) < 2:
        raise UsageError(f"`adjust` needs a user, a delta and a reason, e.g. {ADJUST_EXAMPLE}.")
    return read_adjust(args[0], args[1], " ".join(args[2:]))


def _parse_reconcile(args: list[str]) -> ReconcileCommand:
    if not args or len(args) > 2:
        raise UsageError(
            f"`reconcile` takes a user and optionally the initial grant, e.g. `/tokens reconcile {EXAMPLE_UUID}`"
            f" or `/tokens reconcile ada@example.com 600k`."
        )
    grant = parse_amount(args[1]) if len(args) == 2 else None
    if grant is not None and grant < 0:
        raise UsageError(f"The initial grant cannot be negative; write it like {EXAMPLES}.")
    return ReconcileCommand(user=parse_user(args[0], "reconcile"), initial_grant=grant)


def _parse_requests(args: list[str]) -> RequestsCommand:
    return RequestsCommand()


def _request_number(word: str, command: str) -> int:
    digits = word.removeprefix("#")
    if not digits.isdigit():
        raise UsageError(
            f"`{_clip(word)}` is not a request number; `/tokens requests` lists them, e.g. `/tokens {command} 12`."
        )
    return int(digits)


REJECT_EXAMPLE = "`/tokens reject 12 duplicate of #11`"


def read_reject_reason(reason: str) -> str:
    """A rejection's reason, required wherever it is given (the command or the Reject form)."""
    if not reason.strip():
        raise FieldError(
            "reason",
            f"A rejection needs a reason: it is recorded and shown on the request, e.g. {REJECT_EXAMPLE}.",
        )
    return reason.strip()


def _parse_reject(args: list[str]) -> RejectCommand:
    if len(args) < 2:
        raise UsageError(f"`reject` needs the request number and a reason, e.g. {REJECT_EXAMPLE}.")
    return RejectCommand(
        request_id=_request_number(args[0], "reject"), reason=read_reject_reason(" ".join(args[1:]))
    )


def _parse_cancel(args: list[str]) -> CancelCommand:
    if len(args) != 1:
        raise UsageError("`cancel` takes one request number, e.g. `/tokens cancel 12`.")
    return CancelCommand(request_id=_request_number(args[0], "cancel"))


def _one_amount(args: list[str], command: str, what: str, example: str) -> int | None:
    """The optional single number a fleet list takes; never negative, since nothing is "under -5"."""
    if not args:
        return None
    if len(args) > 1:
        raise UsageError(
            f"`{command}` takes at most one number, the {what}, e.g. `/tokens {command} {example}`."
        )
    value = parse_amount(args[0])
    if value < 0:
        raise UsageError(
            f"The {what} cannot be negative; give 0 or more, e.g. `/tokens {command} {example}`."
        )
    return value


def _parse_lowbalance(args: list[str]) -> LowBalanceCommand:
    return LowBalanceCommand(threshold=_one_amount(args, "lowbalance", "threshold", "25k"))


CAUSE_NAMES = ", ".join(f"`{c.value}`" for c in Cause)


def parse_cause(word: str) -> Cause:
    """A cause by its name as `/tokens discrepancies` shows it; anything else lists the valid names."""
    try:
        return Cause(word.lower())
    except ValueError:
        raise UsageError(
            f"`{_clip(word)}` is not a cause tokens-bot knows. The causes are {CAUSE_NAMES},"
            " e.g. `/tokens discrepancies 100 duplicates`."
        ) from None


def _parse_discrepancies(args: list[str]) -> DiscrepanciesCommand:
    """`[min] [cause]`: the cause is the last word when it does not start like an amount."""
    cause = None
    if args and not re.match(r"^[+-]?[\d.]", args[-1]):
        cause = parse_cause(args[-1])
        args = args[:-1]
    minimum = _one_amount(args, "discrepancies", "minimum discrepancy", "1000")
    return DiscrepanciesCommand(minimum=minimum, cause=cause)


def _parse_top(args: list[str]) -> TopCommand:
    n = _one_amount(args, "top", "number of users", "50")
    if n is None:
        return TopCommand()
    if not 1 <= n <= TOP_MAX:
        raise UsageError(
            f"`top` lists between 1 and {TOP_MAX} users; you asked for {n:,}. Try `/tokens top {TOP_MAX}`."
        )
    return TopCommand(n=n)


def _parse_help(args: list[str]) -> HelpCommand:
    return HelpCommand()


PARSERS: dict[str, Callable[[list[str]], Command]] = {
    "check": _parse_check,
    "chart": _parse_chart,
    "adjust": _parse_adjust,
    "reconcile": _parse_reconcile,
    "requests": _parse_requests,
    "history": _parse_history,
    "reject": _parse_reject,
    "cancel": _parse_cancel,
    "lowbalance": _parse_lowbalance,
    "discrepancies": _parse_discrepancies,
    "top": _parse_top,
    "help": _parse_help,
}


def parse_command(text: str) -> Command:
    """Read the text after `/tokens`; an unknown or missing subcommand answers with the usage."""
    if _CONTROL.search(text):
        # Slack never sends these, PostgreSQL cannot store NUL, and they hide in echoed text.
        raise UsageError("The command contains an invisible control character; please type it again.")
    words = text.split()
    if not words:
        return HelpCommand(problem="You didn't say what to do.")
    name, args = words[0].lower(), words[1:]
    parser = PARSERS.get(name)
    if parser is None:
        return HelpCommand(problem=f"`{_clip(words[0])}` is not a tokens-bot command.")
    return parser(args)
