"""`tokens-bot tick`, the database half: the time-driven approval work, in the caller's one transaction.

Cron (or a CronJob) starts a tick every minute, and runs may overlap or repeat; the work is made
idempotent by the database itself. An advisory lock lets one tick at a time in (a second one skips), and
whatever a tick does is recorded before its commit: an expired request is no longer pending, and a
reminded one carries `reminded_at`, so the next tick finds nothing left to do for either. Slack hears of
it after the commit (bot.entrypoints.jobs.tick), so a Slack outage never undoes or repeats the work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from core.domain.approvals import TickResult
from core.services.approvals import expire_due
from core.settings import Settings
from core.store.reminders import due_reminders, mark_reminded, try_lock_tick


def tick(conn: Connection, settings: Settings, now: datetime) -> TickResult:
    """Expire overdue requests, then pick and mark the pending ones whose approvers are due a reminder.

    Expiry comes first, so a request is never reminded in the same tick that closes it.
    """
    if not try_lock_tick(conn, settings):
        return TickResult(ran=False, at=now)
    expired = expire_due(conn, settings, now)
    reminders = []
    if settings.tokens_remind_after_hours > 0:
        interval = timedelta(hours=settings.tokens_remind_after_hours)
        reminders = due_reminders(conn, settings, now, interval)
        mark_reminded(conn, settings, [request.id for request in reminders], now)
    return TickResult(ran=True, at=now, expired=tuple(expired), reminders=tuple(reminders))
