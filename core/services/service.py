"""The core's front door: each use case opens its one transaction here and returns a typed result."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from uuid import UUID

from core.domain.approvals import (
    ApprovalRequest,
    Decision,
    Person,
    ReconcileReport,
    TickResult,
)
from core.domain.charts import FleetTrend, UsageChart
from core.domain.check_report import CheckReport
from core.domain.errors import UsageError
from core.domain.fixes import Cause
from core.domain.history import AuditRecord, HistoryReport
from core.domain.home import HomeReport
from core.domain.models import LedgerSnapshot
from core.domain.reports import DigestReport, DiscrepancyReport, LowBalanceReport, TopReport
from core.services import approvals, charts, fixes, history
from core.services.alerts import find_alerts
from core.services.check import check_user
from core.services.digest import build_digest
from core.services.fix_service import FixUseCases
from core.services.reconcile import reconcile
from core.services.tick import tick as run_tick
from core.store import fleet, requests
from core.store.alerts import latest_fleet_numbers
from core.store.digests import record_posted

# The Home tab lists at most this many requests of each kind, and this many of the latest decisions.
HOME_LISTED, HOME_DECISIONS = 8, 5
# A chart's days: at least today, at most a year (a leap year's 366 days).
MIN_CHART_DAYS, MAX_CHART_DAYS = 1, 366


class TokensService(FixUseCases):
    """Use cases over one product database; the Slack layer and the console both call these."""

    def check(
        self, actor: str, user: UUID | str, *, page: int = 1, initial_grant: int | None = None
    ) -> CheckReport:
        """`/tokens check`: one consistent snapshot of a user's balance and ledger."""
        self.require_viewer(actor)
        with self._reading(defer_settings=True) as conn:
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
            # Waiting for *their* vote: not their own request, and not one they already approved (quorum).
            waiting = [
                r
                for r in pending
                if voter and r.requester.slack_id != actor and all(v.voter.slack_id != actor for v in r.votes)
            ]
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

    def discrepancies(
        self, actor: str, minimum: int | None = None, *, cause: Cause | None = None, page: int = 1
    ) -> DiscrepancyReport:
        """`/tokens discrepancies`: the whole-ledger scan grouped by cause, in one snapshot."""
        self.require_viewer(actor)
        least = self.settings.tokens_scan_threshold if minimum is None else minimum
        with self._reading(self.scan_engine) as conn:
            return fixes.discrepancy_report(
                conn, self.shape(conn), self.settings, minimum=least, cause=cause, page=page
            )

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
