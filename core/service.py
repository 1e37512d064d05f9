"""The core's front door: each use case opens its one transaction here and returns a typed result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from core.check import check_user
from core.db import unit_of_work
from core.errors import DatabaseUnavailableError, NotAllowedError
from core.models import CheckReport
from core.product import ProductShape, inspect_product
from core.settings import Settings


class TokensService:
    """Use cases over one product database; the Slack layer and the console both call these."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._shape: ProductShape | None = None

    def check(
        self, actor: str, user: UUID | str, *, page: int = 1, initial_grant: int | None = None
    ) -> CheckReport:
        """`/tokens check`: one consistent snapshot of a user's balance and ledger."""
        self.require_viewer(actor)
        with self._reading() as conn:
            return check_user(
                conn, self.shape(conn), self.settings, user, page=page, initial_grant=initial_grant
            )

    def require_viewer(self, actor: str) -> None:
        if not self.settings.may_view(actor):
            raise NotAllowedError(
                "Sorry, balances are personal data, so only tokens-bot admins and viewers can look them"
                " up. Ask an admin to add your Slack ID to TOKENS_VIEWERS."
            )

    def shape(self, conn: Connection) -> ProductShape:
        """Inspect the product schema once per process; it does not change under a running bot."""
        if self._shape is None:
            self._shape = inspect_product(conn, self.settings)
        return self._shape

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with unit_of_work(self.engine, read_only=True, isolation="REPEATABLE READ") as conn:
                conn.execute(
                    text("SELECT set_config('work_mem', :mem, true)"), {"mem": self.settings.tokens_work_mem}
                )
                yield conn
        except OperationalError as exc:
            raise DatabaseUnavailableError(
                "The database is unavailable right now, so nothing was read or changed. Try again in a minute."
            ) from exc
