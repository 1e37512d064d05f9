"""What each button carries, typed: every value is validated into its payload before a handler sees it.

A button's value comes back in a click long after it was rendered: from messages an older version
wrote, or from whoever can get a signed click to the bot. So no handler reads a raw value. Each button
has a model here, `encode` writes the wire format the renderers put on the button (JSON with one-letter
keys, unchanged since the first release so old messages keep working), and `read` turns a value back
into the model or raises DamagedButtonError, whose text says what to run instead.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bot.command_models import CHART_DAYS_MAX, TOP_MAX
from core.domain.errors import UsageError
from core.domain.fixes import Cause

CHECK_PAGE_ACTION = "check_page"
OPEN_CHECK_ACTION = "open_check"
CHART_ACTION = "usage_chart"
LOWBALANCE_PAGE_ACTION = "lowbalance_page"
DISCREPANCIES_PAGE_ACTION = "discrepancies_page"
TOP_PAGE_ACTION = "top_page"
APPROVE_ACTION = "approval_approve"
REJECT_ACTION = "approval_reject"
CANCEL_ACTION = "approval_cancel"
PROPOSE_ACTION = "reconcile_propose"
RECOMPUTE_ACTION = "reconcile_recompute"
HISTORY_PAGE_ACTION = "history_page"
PROPOSE_FIX_ACTION = "fix_propose"
PROPOSE_BATCH_ACTION = "fix_propose_batch"
ADJUST_ACTION = "adjust_open"

BIGINT_MAX = 2**63 - 1
# Past this a page number is not one the bot ever rendered; asking for it shows the last page instead.
MAX_PAGE = 10_000
# Slack's own limit on a button's value: anything longer was not written by the bot.
MAX_VALUE_LENGTH = 2000
MAX_USER_ID_LENGTH = 128


class DamagedButtonError(UsageError):
    """A button's value that is not what the bot wrote: refused with what to run instead."""


# Unicode's control characters (category Cc) are exactly these 65 code points: one search instead of a
# category lookup per character, on every button a reply carries.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _no_control_characters(text: str) -> str:
    if _CONTROL_CHARACTERS.search(text):
        raise ValueError("control characters")
    return text


def _clamp_page(page: int) -> int:
    return min(page, MAX_PAGE)


# A product user id as text: uuid, bigint or text in the product, so only its shape is checked here;
# the service takes it as it is (an email-shaped one is looked up as an email, like a typed one).
UserId = Annotated[
    str, Field(min_length=1, max_length=MAX_USER_ID_LENGTH), AfterValidator(_no_control_characters)
]
PageNumber = Annotated[int, Field(ge=1, le=BIGINT_MAX), AfterValidator(_clamp_page)]
Amount = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


class ButtonValue(BaseModel):
    """The base of every payload: strict types (no "2" for 2, no true for 1), unknown keys ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    rerun: ClassVar[str] = "run the command again"

    def encode(self) -> str:
        """The value to put on the button; `read` gives this model back."""
        return json.dumps(self.model_dump(mode="json"))


class CheckPage(ButtonValue):
    """A check's Previous/Next, and a list row's Check (page 1 of that user's check)."""

    rerun: ClassVar[str] = "run `/tokens check <user>` again"
    u: UserId
    p: PageNumber
    g: Amount | None = None


class ChartButton(ButtonValue):
    """A check's Chart button: the user and how many days back to draw."""

    rerun: ClassVar[str] = "run `/tokens chart <user>` instead"
    u: UserId
    d: Annotated[int, Field(ge=1, le=CHART_DAYS_MAX)]


class LowBalancePage(ButtonValue):
    rerun: ClassVar[str] = "run `/tokens lowbalance` again"
    t: Amount
    p: PageNumber


class DiscrepanciesPage(ButtonValue):
    """A discrepancy list's Previous/Next: the minimum and the cause it was filtered by, if any."""

    rerun: ClassVar[str] = "run `/tokens discrepancies` again"
    m: Amount
    p: PageNumber
    c: Cause | None = None


class TopPage(ButtonValue):
    rerun: ClassVar[str] = "run `/tokens top` again"
    n: Annotated[int, Field(ge=1, le=TOP_MAX)]
    p: PageNumber


class HistoryPage(ButtonValue):
    """A history's Previous/Next: whose history, and which page."""

    rerun: ClassVar[str] = "run `/tokens history <user>` again"
    u: UserId
    p: PageNumber


class RequestButton(ButtonValue):
    """Approve, Reject and Cancel on a request: its number."""

    rerun: ClassVar[str] = "`/tokens requests` lists the open requests with working buttons"
    r: Annotated[int, Field(ge=1, le=BIGINT_MAX)]


class AdjustButton(ButtonValue):
    """A check's Adjust… button: the user the adjust form opens with."""

    rerun: ClassVar[str] = "run `/tokens adjust` instead"
    u: UserId


class Recompute(ButtonValue):
    """A stale correction's Recompute: the user and the grant assumption it was proposed with."""

    rerun: ClassVar[str] = "run `/tokens reconcile <user>` again"
    u: UserId
    g: Amount | None = None


def _in_utc(at: datetime | None) -> datetime | None:
    """An aware time in UTC: JSON keeps offsets to the minute, and some zones' past ones had seconds."""
    if at is None or at.utcoffset() is None:
        return at
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:  # the first or last representable day, east or west of UTC
        raise ValueError("time out of range") from exc


class ProposeCorrection(ButtonValue):
    """The Propose correction button: the user, the grant assumption and the ledger position seen."""

    rerun: ClassVar[str] = "run `/tokens reconcile <user>` again"
    u: UserId
    g: Amount | None = None
    n: Amount
    t: Annotated[datetime | None, AfterValidator(_in_utc)]


class ProposeFix(ButtonValue):
    """A check's Propose fix: the user, the cause to fix and the ledger position the check saw."""

    rerun: ClassVar[str] = "run `/tokens check <user>` again"
    u: UserId
    c: Cause
    n: Amount
    t: Annotated[datetime | None, AfterValidator(_in_utc)]


class ProposeBatch(ButtonValue):
    """A cause group's "Propose fix for all N users": the cause and the list's minimum discrepancy."""

    rerun: ClassVar[str] = "run `/tokens discrepancies` again"
    c: Cause
    m: Amount


class _Named(ButtonValue):
    u: UserId


PAYLOADS: dict[str, type[ButtonValue]] = {
    CHECK_PAGE_ACTION: CheckPage,
    OPEN_CHECK_ACTION: CheckPage,
    CHART_ACTION: ChartButton,
    LOWBALANCE_PAGE_ACTION: LowBalancePage,
    DISCREPANCIES_PAGE_ACTION: DiscrepanciesPage,
    TOP_PAGE_ACTION: TopPage,
    APPROVE_ACTION: RequestButton,
    REJECT_ACTION: RequestButton,
    CANCEL_ACTION: RequestButton,
    PROPOSE_ACTION: ProposeCorrection,
    RECOMPUTE_ACTION: Recompute,
    HISTORY_PAGE_ACTION: HistoryPage,
    PROPOSE_FIX_ACTION: ProposeFix,
    PROPOSE_BATCH_ACTION: ProposeBatch,
    ADJUST_ACTION: AdjustButton,
}

V = TypeVar("V", bound=ButtonValue)


def read(model: type[V], value: str) -> V:
    """`value` as `model`, or DamagedButtonError saying what to run instead; never another error."""
    if len(value) <= MAX_VALUE_LENGTH:
        try:
            return model.model_validate_json(value)
        except (ValidationError, ValueError, RecursionError):
            pass
    raise DamagedButtonError(f"That button's data is damaged, so nothing was done; {model.rerun}.")


def user_of(value: str) -> str | None:
    """The product user a button names, when it names a valid one: for the audit log, never raising."""
    if len(value) > MAX_VALUE_LENGTH:
        return None
    try:
        return _Named.model_validate_json(value).u
    except (ValidationError, ValueError, RecursionError):
        return None
