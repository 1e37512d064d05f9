"""The typed commands `/tokens` text is parsed into (bot.commands): what each command carries."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict

from core.domain.fixes import Cause

TOP_DEFAULT = 20
TOP_MAX = 100
CHART_DAYS_DEFAULT = 90
CHART_DAYS_MAX = 366


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class HelpCommand(_Command):
    """Show usage; `problem` says what was wrong when help is the answer to a mistake."""

    problem: str | None = None


class CheckCommand(_Command):
    user: UUID | str


class ChartCommand(_Command):
    user: UUID | str
    days: int = CHART_DAYS_DEFAULT


class HistoryCommand(_Command):
    user: UUID | str


class AdjustCommand(_Command):
    user: UUID | str
    delta: int
    reason: str


class AdjustFormCommand(_Command):
    """`/tokens adjust` with nothing after it: the adjust form (a modal in Slack) instead of an error."""


class ReconcileCommand(_Command):
    user: UUID | str
    initial_grant: int | None = None


class RequestsCommand(_Command):
    pass


class RejectCommand(_Command):
    request_id: int
    reason: str


class CancelCommand(_Command):
    request_id: int


class LowBalanceCommand(_Command):
    threshold: int | None = None


class DiscrepanciesCommand(_Command):
    minimum: int | None = None
    cause: Cause | None = None


class TopCommand(_Command):
    n: int = TOP_DEFAULT


Command = (
    HelpCommand
    | LowBalanceCommand
    | DiscrepanciesCommand
    | TopCommand
    | CheckCommand
    | ChartCommand
    | HistoryCommand
    | AdjustCommand
    | AdjustFormCommand
    | ReconcileCommand
    | RequestsCommand
    | RejectCommand
    | CancelCommand
)
