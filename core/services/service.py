"""The core's front door: each use case opens its one transaction here and returns a typed result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import partial
from uuid import UUID

from psycopg.errors import InsufficientPrivilege, QueryCanceled
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, ProgrammingError

from core.domain.approvals import (
    ApprovalRequest,
    Decision,
    LedgerSnapshot,
    Person,
    ReconcileReport,
    TickResult,
)
from core.domain.charts import FleetTrend, UsageChart
from core.domain.errors import (
    DatabaseUnavailableError,
    NotAllowedError,
    ProductDataError,
    QueryTimeoutError,
    TokensBotError,
    UsageError,
)
from core.domain.history import AuditRecord, HistoryReport
from core.domain.home import HomeReport
from core.domain.models import CheckReport
from core.domain.reports import DigestReport, DiscrepancyReport, LowBalanceReport, TopReport
from core.services import approvals, charts, history
from core.services.alerts import find_alerts
from core.services.check import check_user
from core.services.digest import build_digest
from core.services.reconcile import reconcile
from core.services.tick import tick as run_tick
from core.settings import Settings
from core.store import fleet, requests
from core.store.alerts import latest_fleet_numbers
from core.store.catalog import inspect_product
from core.store.db import unit_of_work
from core.store.digests import record_posted
from core.store.product import ProductShape

# The Home tab lists at most this many requests of each kind, and this many of the latest decisions.
HOME_LISTED, HOME_DECISIONS = 8, 5
# A chart's days: at least today, at most a year (a leap year's 366 days).
MIN_CHART_DAYS, MAX_CHART_DAYS = 1, 366


class TokensService:
    """Use cases over one product database; the Slack layer and the console both call these."""

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

    def check(
        self, actor: str, user: UUID | str, *, page: int = 1, initial_grant: int | None = None
    ) -> CheckReport:
        """`/tokens check`: one consistent snapshot of a user's balance and ledger."""
        self.require_viewer(actor)
        with self._reading() as conn:
            return check_user(
                conn, self.shape(conn), self.settings, user, page=page, initial_grant=initial_grant
            )

    def request_adjustment(self, actor: Person, user: UUID | str, delta: int, reason: str) -> ApprovalRequest:
        """`/tokens adjust`: a pending grant or deduction, checked against the current balance."""
        with self._writing() as conn:
            request = approvals.request_adjustment(
                conn, self.shape(conn), self.settings, actor, user, delta, reason, self.clock()
            )
            conn.commit()
            return request

    def reconcile(self, actor: str, user: UUID | str, *, initial_grant: int | None = None) -> ReconcileReport:
        """`/tokens reconcile`: the guide's Step 4 for one user."""
        self.require_viewer(actor)
        with self._reading() as conn:
            return reconcile(conn, self.shape(conn), self.settings, user, initial_grant)

    def propose_correction(
        self, actor: Person, user_id: str, initial_grant: int | None, seen: LedgerSnapshot
    ) -> ApprovalRequest:
        """The "Propose correction" button: a pending Step 5 for the values the proposer saw."""
        with self._writing() as conn:
            request = approvals.propose_correction(
                conn, self.shape(conn), self.settings, actor, user_id, initial_grant, seen, self.clock()
            )
            conn.commit()
            return request

    def approve(self, actor: Person, request_id: int) -> Decision:
        with self._writing() as conn:
            decision = approvals.approve(conn, self.shape(conn), self.settings, actor, request_id, self.clock)
            conn.commit()
            return decision

    def reject(self, actor: Person, request_id: int, reason: str) -> Decision:
        with self._writing() as conn:
            decision = approvals.reject(conn, self.settings, actor, request_id, reason, self.clock)
            conn.commit()
            return decision

    def cancel(self, actor: Person, request_id: int) -> Decision:
        with self._writing() as conn:
            decision = approvals.cancel(conn, self.settings, actor, request_id, self.clock)
            conn.commit()
            return decision

    def expire_due(self) -> list[ApprovalRequest]:
        with self._writing() as conn:
            expired = approvals.expire_due(conn, self.settings, self.clock())
            conn.commit()
            return expired

    def tick(self) -> TickResult:
        """`tokens-bot tick`: expiries, due reminders and (with TOKENS_ALERTS_CHANNEL) alerts, decided and
        recorded in one transaction under the tick's lock."""
        with self._writing() as conn:
            result = run_tick(conn, self.settings, self.clock())
            if result.ran and self.settings.tokens_alerts_channel:
                scan = partial(self._reading, self.scan_engine)
                alerts = find_alerts(conn, scan, self.shape(conn), self.settings, result.at)
                result = result.model_copy(update={"alerts": tuple(alerts)})
            conn.commit()
            return result

    def pending_requests(self, actor: str) -> list[ApprovalRequest]:
        self.require_viewer(actor)
        with self._reading() as conn:
            return requests.pending_requests(conn, self.settings, self.clock())

    def home(self, actor: str) -> HomeReport:
        """The Home tab's content for `actor`, in one snapshot of stored state: no fleet scan runs here."""
        if not self.settings.may_view(actor):
            return HomeReport(viewer=False)
        with self._reading() as conn:
            pending = requests.pending_requests(conn, self.settings, self.clock())
            voter = actor in self.settings.approvers
            waiting = [r for r in pending if voter and r.requester.slack_id != actor]
            mine = [r for r in pending if r.requester.slack_id == actor]
            return HomeReport(
                viewer=True,
                waiting=tuple(waiting[:HOME_LISTED]),
                mine=tuple(mine[:HOME_LISTED]),
                others_pending=len(pending) - len(waiting) - len(mine),
                fleet=latest_fleet_numbers(conn, self.settings),
                decisions=tuple(requests.latest_decisions(conn, self.settings, HOME_DECISIONS)),
            )

    def attach_message(self, request_id: int, channel: str, ts: str) -> None:
        with self._writing() as conn:
            requests.attach_message(conn, self.settings, request_id, channel, ts)
            conn.commit()

    def history(self, actor: str, user: UUID | str, *, page: int = 1) -> HistoryReport:
        """`/tokens history`: the user's audit trail, newest first, paged, in one snapshot."""
        self.require_viewer(actor)
        with self._reading() as conn:
            return history.user_history(conn, self.shape(conn), self.settings, user, page=page)

    def export_audit(self, write: Callable[[AuditRecord], None], *, since: date | None = None) -> int:
        """`tokens-bot audit-export`: the whole audit log in one snapshot, streamed to `write`. Run from the
        command line by whoever holds DATABASE_URL, so there is no Slack user to check."""
        with self._reading() as conn:
            return history.export_audit(conn, self.settings, write, since)

    def lowbalance(self, actor: str, threshold: int | None = None, *, page: int = 1) -> LowBalanceReport:
        """`/tokens lowbalance`: users under the threshold, lowest first."""
        self.require_viewer(actor)
        limit = self.settings.tokens_lowbalance_threshold if threshold is None else threshold
        with self._reading(self.scan_engine) as conn:
            return fleet.low_balances(conn, self.shape(conn), self.settings, threshold=limit, page=page)

    def discrepancies(self, actor: str, minimum: int | None = None, *, page: int = 1) -> DiscrepancyReport:
        """`/tokens discrepancies`: the whole-ledger scan, in one snapshot."""
        self.require_viewer(actor)
        least = self.settings.tokens_scan_threshold if minimum is None else minimum
        with self._reading(self.scan_engine) as conn:
            return fleet.scan_discrepancies(conn, self.shape(conn), self.settings, minimum=least, page=page)

    def top(self, actor: str, n: int, *, page: int = 1) -> TopReport:
        """`/tokens top`: highest lifetime usage."""
        self.require_viewer(actor)
        with self._reading(self.scan_engine) as conn:
            return fleet.top_users(conn, self.shape(conn), self.settings, n=n, page=page)

    def digest(
        self, channel: str, publish: Callable[[DigestReport], str | None], *, remember: bool = True
    ) -> DigestReport:
        """The daily digest: scanned on the scan engine, remembered on the primary once `publish` succeeded.

        `publish` posts the report and returns the message's timestamp; if it raises, nothing is
        remembered and the next digest compares with the last one that was actually posted. A dry run
        (`remember=False`) leaves no trace either.
        """
        with self._writing() as primary, self._reading(self.scan_engine) as reader:
            report, digest_id = build_digest(primary, reader, self.shape(reader), self.settings, channel)
            record_posted(primary, self.settings, digest_id, publish(report))
            if remember:
                primary.commit()
            return report

    def usage_chart(self, actor: str, user: UUID | str, *, days: int = 90) -> UsageChart:
        """`/tokens chart`: a user's daily usage and balance, read in one snapshot like the check."""
        self.require_viewer(actor)
        if not MIN_CHART_DAYS <= days <= MAX_CHART_DAYS:
            raise UsageError(
                f"A chart covers {MIN_CHART_DAYS} to {MAX_CHART_DAYS} days (a year), not {days:,}."
                " For example: `/tokens chart ada@example.com 30`."
            )
        with self._reading() as conn:
            return charts.usage_chart(conn, self.shape(conn), self.settings, user, days)

    def fleet_trend(self, channel: str) -> FleetTrend:
        """The digest channel's trend: its digests from the primary (where they are written), the fleet's
        consumption from the scan engine (it reads the whole ledger's span), both read-only."""
        with self._reading() as primary, self._reading(self.scan_engine) as reader:
            return charts.fleet_trend(primary, reader, self.shape(reader), self.settings, channel)

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
    def _reading(self, engine: Engine | None = None) -> Iterator[Connection]:
        try:
            with unit_of_work(
                engine or self.engine,
                read_only=True,
                isolation="REPEATABLE READ",
                local={"work_mem": self.settings.tokens_work_mem},
            ) as conn:
                yield conn
        except (OperationalError, DataError, ProgrammingError) as exc:
            raise self._database_error(exc, "nothing was read or changed") from exc

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """READ COMMITTED with row locks: a locked row is re-read after the lock wait, never stale."""
        try:
            with unit_of_work(self.engine) as conn:
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
