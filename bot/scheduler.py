"""The scheduled work, told to Slack: one tick (for `tokens-bot tick` and the loop), and the loop that
`tokens-bot serve` runs when TOKENS_TICK_INTERVAL_SECONDS is set.

Every serve worker of every replica starts a loop, but only the one holding the leader lease
(core.store.scheduler) ticks; the others wait and take over within an interval if its process dies.
"""

from __future__ import annotations

import logging
import threading
from typing import NamedTuple

from sqlalchemy import Connection

from bot.publishing import finish_fix_in_slack, publish, remind
from bot.render.alerts import render_alerts
from bot.slack.delivery import web_client
from bot.slack.port import SlackPort, WebSlack
from core.domain.approvals import TickResult
from core.domain.fix_batches import BatchProgress
from core.domain.rollups import FoldResult, SignalsKept
from core.services.rollup import fold_ledger
from core.services.service import TokensService
from core.services.signal_refresh import keep_largest_signals
from core.store.scheduler import still_leading, try_lead

log = logging.getLogger(__name__)


class TickOutcome(NamedTuple):
    """One tick as it went: what it decided, how many reminders Slack took, whether the alerts were posted,
    the interrupted fixes it resumed, the fold of the ledger totals and the finding signals kept after it
    (None: it failed, and is logged)."""

    result: TickResult
    reminded: int = 0
    alerts_posted: bool = False
    resumed: tuple[BatchProgress, ...] = ()
    folded: FoldResult | None = None
    signals: SignalsKept | None = None


def tick_once(service: TokensService, slack: SlackPort) -> TickOutcome:
    """Decide and record the tick's work in one transaction, then tell Slack: expiries, reminders, alerts;
    then resume the fixes an interruption left half applied (each item in its own transaction), and fold
    the ledger rows since the last fold into the fleet scans' totals, and keep the finding signals of the
    largest discrepancies for the lists that group them by cause.

    Slack hears of it after the commit and best-effort, so a Slack outage never undoes or repeats the work.
    """
    result = service.tick()
    if not result.ran:
        return TickOutcome(result)
    for request in result.expired:
        publish(service, slack, request, None)
    reminded = sum(
        remind(slack, service.settings.approvers, request, result.at) for request in result.reminders
    )
    posted = False
    channel = service.settings.tokens_alerts_channel
    if result.alerts and channel:
        reply = render_alerts(result.alerts, service.settings.tokens_problem_threshold)
        posted = slack.post(channel, reply) is not None
        if not posted:
            log.warning(
                "Slack did not take %s alerts for %s; they stay recorded as told", len(result.alerts), channel
            )
    resumed = tuple(
        finish_fix_in_slack(service, slack, request_id) for request_id in service.interrupted_fixes()
    )
    folded = fold_recent(service)
    signals = keep_signals(service) if folded is not None and folded.ran else None
    return TickOutcome(result, reminded, posted, resumed, folded, signals)


def fold_recent(service: TokensService) -> FoldResult | None:
    """Fold the rows since the last fold into the ledger totals fleet scans read, once they exist (the
    first, whole-ledger fold is `tokens-bot rollup`'s). A failed fold is logged and tried next tick: the
    scans stay exact meanwhile, reading the rows since the last fold live."""
    try:
        return fold_ledger(service.engine, service.scan_engine, service.settings, incremental_only=True)
    except Exception:
        log.exception("the scheduled fold of the ledger totals failed; the next tick tries again")
        return None


def keep_signals(service: TokensService) -> SignalsKept | None:
    """Count the signals of the largest discrepancies whose rows changed in the fold, and keep them. A
    failure is logged and tried next tick: lists count what is not kept live meanwhile."""
    try:
        return keep_largest_signals(service.engine, service.scan_engine, service.settings)
    except Exception:
        log.exception(
            "keeping the finding signals of the largest discrepancies failed; the next tick tries again"
        )
        return None


class TickLoop(threading.Thread):
    """Ticks every `interval` seconds while this process holds the leader lease."""

    def __init__(self, service: TokensService, slack: SlackPort, interval: float) -> None:
        super().__init__(name="tokens-bot-tick", daemon=True)
        self.service = service
        self.slack = slack
        self.interval = interval
        self._stopping = threading.Event()
        self._lease: Connection | None = None

    @classmethod
    def start_if_configured(cls, service: TokensService) -> TickLoop | None:
        """A running loop when TOKENS_TICK_INTERVAL_SECONDS is set (and a bot token to tell Slack with)."""
        settings = service.settings
        if not settings.tokens_tick_interval_seconds or not settings.slack_bot_token:
            return None
        loop = cls(service, WebSlack(web_client(settings), settings), settings.tokens_tick_interval_seconds)
        loop.start()
        return loop

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                if self._leading():
                    tick_once(self.service, self.slack)
            except Exception:
                log.exception("the scheduled tick failed; the next one runs in %s s", self.interval)
                self._drop_lease()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=self.interval + 30)
        self._drop_lease()

    def _leading(self) -> bool:
        settings = self.service.settings
        if self._lease is not None and still_leading(self._lease, settings):
            return True
        self._drop_lease()
        conn = self.service.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if try_lead(conn, settings):
            log.info("this process runs the scheduled tick every %s s", self.interval)
            self._lease = conn
            return True
        conn.close()
        return False

    def _drop_lease(self) -> None:
        if self._lease is not None:
            try:
                self._lease.invalidate()
            finally:
                self._lease = None
