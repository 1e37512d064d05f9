"""What every use case shares: the engines, the clock, the product's shape, and one transaction each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from psycopg.errors import InsufficientPrivilege, QueryCanceled
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, ProgrammingError

from core.domain.errors import (
    DatabaseUnavailableError,
    NotAllowedError,
    ProductDataError,
    QueryTimeoutError,
    TokensBotError,
)
from core.settings import Settings
from core.store.catalog import inspect_product
from core.store.db import Isolation, unit_of_work
from core.store.product import ProductShape


class ServiceBase:
    """Opens the transactions; the use cases live in the subclasses (core.services.service)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        read_engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        # Fleet scans read the whole ledger: on a replica when DATABASE_READ_URL is set, never the primary.
        self.scan_engine = read_engine or engine
        # Request expiry and the audit trail's timestamps read this clock; tests move it.
        self.clock = clock or (lambda: datetime.now(UTC))
        self._shape: ProductShape | None = None

    def require_viewer(self, actor: str) -> None:
        if not self.settings.may_view(actor):
            raise NotAllowedError(
                "Sorry, balances are personal data, so only tokens-bot admins and viewers can look them"
                " up. Ask an admin to add your Slack ID to TOKENS_VIEWERS."
            )

    def shape(self, conn: Connection) -> ProductShape:
        """Inspect the product schema once per process; it does not change under a running bot.

        Every use case reconciles a cached balance against the ledger, so a schema without one of the
        guide's required columns, or without cached balances at all, is refused here, plainly.
        """
        if self._shape is None:
            self._shape = inspect_product(conn, self.settings)
        if self._shape.missing:
            raise ProductDataError(
                "tokens-bot cannot reconcile this database: it lacks " + ", ".join(self._shape.missing) + "."
                " `tokens-bot doctor` shows what it found."
            )
        if not self._shape.has_balances:
            raise ProductDataError(
                "This product keeps no cached balance (user_profiles has no vibe_assistant_tokens_remaining"
                " column), so there is nothing to reconcile or adjust: its balance is computed from its"
                " ledger by the product itself. `tokens-bot doctor` shows what the bot found."
            )
        return self._shape

    @contextmanager
    def _reading(self, engine: Engine | None = None, *, defer_settings: bool = False) -> Iterator[Connection]:
        """A read-only snapshot; `defer_settings` as `unit_of_work` says (a check's settings ride with its reads)."""
        try:
            with unit_of_work(
                engine or self.engine,
                read_only=True,
                isolation="REPEATABLE READ",
                local={"work_mem": self.settings.tokens_work_mem},
                defer_settings=defer_settings,
            ) as conn:
                yield conn
        except (OperationalError, DataError, ProgrammingError) as exc:
            raise self._database_error(exc, "nothing was read or changed") from exc

    @contextmanager
    def _writing(self, isolation: Isolation = "READ COMMITTED") -> Iterator[Connection]:
        """READ COMMITTED with row locks: a locked row is re-read after the lock wait, never stale.

        A proposal that must read one snapshot across statements asks for REPEATABLE READ."""
        try:
            with unit_of_work(self.engine, isolation=isolation) as conn:
                yield conn
        except (OperationalError, DataError, ProgrammingError) as exc:
            raise self._database_error(exc, "nothing was changed") from exc

    def _database_error(self, exc: DBAPIError, outcome: str) -> TokensBotError:
        """Our own statement timeout is told apart from an unreachable database: the fixes differ.

        A value the product stored that PostgreSQL cannot convert, or a permission the bot's role lacks,
        is the product database's doing: the operator is told which, with PostgreSQL's own words.
        """
        diag = getattr(exc.orig, "diag", None)
        detail = str(getattr(diag, "message_primary", None) or "").strip()
        if isinstance(exc.orig, InsufficientPrivilege):
            return ProductDataError(
                f"tokens-bot's database role may not do what this needs ({detail}), so {outcome}."
                ' `tokens-bot doctor` and README "Security" list the grants it needs.'
            )
        if isinstance(exc, DataError):
            return ProductDataError(
                f"The product's database holds a value tokens-bot could not read or write ({detail}),"
                f" so {outcome}. `tokens-bot doctor` explains how the bot reads this database."
            )
        if isinstance(exc, ProgrammingError):
            raise exc
        if isinstance(exc.orig, QueryCanceled):
            seconds = self.settings.tokens_statement_timeout_ms / 1000
            return QueryTimeoutError(
                f"The database took longer than {seconds:g} s to answer, so tokens-bot stopped the query and"
                f" {outcome}. Try again in a minute; if it keeps happening, tell whoever runs tokens-bot."
            )
        return DatabaseUnavailableError(
            f"The database is unavailable right now, so {outcome}. Try again in a minute."
        )
