"""`tokens-bot digest`, `tick`, `doctor` and `audit-export`: the command-line entry points, for cron, ops and
auditors."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import date
from typing import TextIO

from bot.bootstrap import build_service, prepare_database
from bot.render.charts import fleet_trend_png
from bot.render.common import Reply
from bot.render.doctor import format_doctor
from bot.render.fleet import render_digest
from bot.render.text import blocks_as_text
from bot.scheduler import tick_once
from bot.slack.delivery import web_client
from bot.slack.port import WebSlack
from core.domain.errors import DigestNotPostedError
from core.domain.history import AuditRecord
from core.domain.reports import DigestReport
from core.services.rollup import fold_ledger, verify_ledger
from core.services.service import TokensService
from core.services.signal_refresh import keep_largest_signals
from core.settings import Settings
from core.store.db import make_engine
from core.store.doctor import diagnose_database

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    digest = sub.add_parser("digest", help="post the daily digest to a channel (for cron or a CronJob)")
    digest.add_argument("--channel", required=True, help="Slack channel ID, e.g. C0123456789")
    digest.add_argument(
        "--dry-run", action="store_true", help="print the digest instead of posting it, and remember nothing"
    )
    sub.add_parser(
        "tick",
        help="expire overdue requests, remind approvers and resume interrupted fixes (for cron or a CronJob,"
        " every minute)",
    )
    rollup = sub.add_parser(
        "rollup",
        help="fold new ledger rows into the per-user totals fleet scans read (cron, every few minutes)",
    )
    rollup.add_argument(
        "--full",
        action="store_true",
        help="fold every row again (weekly: catches rows inserted long after their time)",
    )
    rollup.add_argument(
        "--verify",
        action="store_true",
        help="compare the totals with a full scan, print every mismatch, fold nothing",
    )
    sub.add_parser("doctor", help="check indexes, row counts and pooler settings of the database(s)")
    export = sub.add_parser(
        "audit-export", help="write the bot's audit log to stdout, oldest first, for auditors"
    )
    export.add_argument(
        "--since", type=since_date, metavar="YYYY-MM-DD", help="only events from this UTC day on"
    )
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="csv (default) or jsonl")


EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "request_id",
    "kind",
    "user_id",
    "user_email",
    "event",
    "actor",
    "actor_name",
    "at",
    "details",
)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def since_date(text: str) -> date:
    """A calendar day written YYYY-MM-DD and nothing else: an auditor's period must not be guessed at."""
    try:
        if _DAY.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a date; give the first UTC day to export as YYYY-MM-DD, e.g. 2026-05-01"
    )


def audit_export(settings: Settings, since: date | None, fmt: str, out: TextIO | None = None) -> int:
    """Stream the audit log to `out` (stdout) as CSV with a header row, or as one JSON object per line.

    Rows are written as the server-side cursor yields them, so memory stays flat however long the log is.
    """
    stream = out or sys.stdout
    service = build_service(settings, prepare_database(settings))
    try:
        count = service.export_audit(_writer(fmt, stream), since=since)
    finally:
        service.engine.dispose()
    stream.flush()
    log.info("audit-export wrote %s events", f"{count:,}")
    return 0


def _writer(fmt: str, stream: TextIO) -> Callable[[AuditRecord], None]:
    if fmt == "jsonl":

        def write_line(record: AuditRecord) -> None:
            # `details` is the stored JSON's own text, spliced in as it is: no number passes through a float.
            head = json.dumps(record.head(), ensure_ascii=False)
            stream.write(f'{head[:-1]}, "details": {record.details}}}\n')

        return write_line
    rows = csv.writer(stream)
    rows.writerow(EXPORT_COLUMNS)

    def write_row(record: AuditRecord) -> None:
        head = record.head()
        rows.writerow([*("" if head[c] is None else head[c] for c in EXPORT_COLUMNS[:-1]), record.details])

    return write_row


def digest(settings: Settings, channel: str, *, dry_run: bool) -> int:
    """Scan, post, and only then remember what was reported, so a failed post is reported again next time."""
    if not dry_run and not settings.slack_bot_token:
        print("tokens-bot digest needs SLACK_BOT_TOKEN (or --dry-run)", file=sys.stderr)
        return 2
    service = build_service(settings, prepare_database(settings))
    slack = WebSlack(web_client(settings), settings)
    posted: list[str] = []

    def publish(report: DigestReport) -> str | None:
        reply = render_digest(report)
        if dry_run:
            print(_as_text(reply))
            return None
        ts = slack.post(channel, reply)
        if ts is None:
            raise DigestNotPostedError(f"Slack did not accept the digest for {channel}; see the log above.")
        posted.append(ts)
        return ts

    report = service.digest(channel, publish, remember=not dry_run)
    if posted:
        _thread_trend_chart(service, slack, channel, posted[0])
    print(
        f"digest {'printed' if dry_run else f'posted to {channel}'}: {report.low.total:,} low balances,"
        f" {report.discrepant:,} discrepancies ({report.new:,} new, {report.resolved:,} resolved)"
    )
    return 0


def tick(settings: Settings) -> int:
    """The scheduled work (expiries, reminders, alerts, interrupted fixes): decide and record it in one transaction, then tell Slack.

    Slack hears of it after the commit and best-effort: an expiry stands and a reminder stays marked
    even when Slack fails (logged), so a flaky Slack never makes the next tick repeat a message. Exit 0
    also when another tick held the lock: that one is doing the work.
    """
    if not settings.slack_bot_token:
        print("tokens-bot tick needs SLACK_BOT_TOKEN", file=sys.stderr)
        return 2
    service = build_service(settings, prepare_database(settings))
    try:
        outcome = tick_once(service, WebSlack(web_client(settings), settings))
    finally:
        service.engine.dispose()
    result = outcome.result
    if not result.ran:
        log.info("another tokens-bot tick holds the lock; this one skips")
        print("tick skipped: another tick is running")
        return 0
    failed = len(result.reminders) - outcome.reminded
    notes = [f"{len(result.expired):,} expired", f"{outcome.reminded:,} reminded"]
    if failed:
        notes.append(f"{failed:,} reminders not posted (Slack refused them)")
    if result.alerts:
        notes.append(
            f"{len(result.alerts):,} alerts"
            + ("" if outcome.alerts_posted else " not posted (Slack refused them)")
        )
    if outcome.folded is not None and outcome.folded.ran:
        notes.append(f"ledger totals folded ({outcome.folded.users:,} users changed)")
    if outcome.signals is not None:
        notes.append(f"finding signals of {outcome.signals.counted:,} of the largest discrepancies counted")
    if outcome.resumed:
        applied = sum(progress.applied for progress in outcome.resumed)
        notes.append(f"{len(outcome.resumed):,} interrupted fixes resumed ({applied:,} items applied in all)")
    print("tick: " + ", ".join(notes))
    return 0


def rollup(settings: Settings, *, full: bool, verify: bool) -> int:
    """Fold (or verify) the ledger totals; exit 1 when verification found a mismatch.

    A fold or a verification reads many rows at once, so it runs without the interactive statement
    timeout (ROLLUP_TIMEOUT_MS instead).
    """
    settings = settings.model_copy(update={"tokens_statement_timeout_ms": ROLLUP_TIMEOUT_MS})
    service = build_service(settings, prepare_database(settings))
    try:
        if verify:
            checked = verify_ledger(service.engine, service.scan_engine, settings)
            if checked.watermark is None:
                print("rollup verify: no totals folded yet (run tokens-bot rollup)")
                return 1
            for mismatch in checked.mismatches:
                fields = "; ".join(
                    f"{name}: folded {folded}, ledger {ledger}"
                    for name, (folded, ledger) in mismatch.fields.items()
                )
                print(f"mismatch {mismatch.user_id}: {fields or 'only in one of them'}")
            print(
                f"rollup verify: {checked.users:,} users up to {checked.watermark.isoformat()},"
                f" {len(checked.mismatches):,} mismatches"
            )
            return 1 if checked.mismatches else 0
        result = fold_ledger(service.engine, service.scan_engine, settings, full=full)
        if not result.ran:
            print("rollup skipped: another fold is running")
            return 0
        signals = keep_largest_signals(service.engine, service.scan_engine, settings, recount=result.full)
    finally:
        service.engine.dispose()
    assert result.watermark is not None
    kind = f"full fold ({result.full_reason})" if result.full else f"folded from {result.previous}"
    late = (
        f"{result.late_users:,} users re-read for rows inserted late ({result.late_hours:,} hours)"
        if result.relooked
        else f"rows inserted late not looked for (one fold every {settings.tokens_rollup_relook_every_minutes}"
        " minutes does)"
    )
    print(
        f"rollup: {kind} to {result.watermark.isoformat()}: {result.users:,} users' totals changed, {late};"
        f" finding signals of the largest discrepancies: {signals.counted:,} counted, {signals.reused:,} still"
        f" held, {signals.forgotten:,} forgotten"
    )
    return 0


# A fold of the whole ledger (the first, or --full) reads every row: 35 s at 30,000,000 rows.
ROLLUP_TIMEOUT_MS = 6 * 3_600_000


def _thread_trend_chart(service: TokensService, slack: WebSlack, channel: str, ts: str) -> None:
    """The channel's trend, drawn after the digest committed (so it is the last point) and shared in the
    digest's thread. Best-effort: the digest is posted and remembered already, and stands without it."""
    try:
        png = fleet_trend_png(service.fleet_trend(channel))
        title = "Fleet trend: discrepancies, low balances and daily consumption per digest"
        if not slack.upload(channel, f"tokens-trend-{channel}.png", png, title, thread_ts=ts):
            log.warning("Slack did not take the trend chart for %s; the digest stands without it", channel)
    except Exception:
        log.exception("drawing or sharing the trend chart for %s failed; the digest stands", channel)


def _as_text(reply: Reply) -> str:
    text, _ = blocks_as_text(reply.as_kwargs()["blocks"])
    return text


def doctor(settings: Settings) -> int:
    """Print a report per database; exit 1 when an index the bot relies on is missing."""
    targets = [("DATABASE_URL", prepare_database(settings))]
    if settings.database_read_url:
        targets.append(("DATABASE_READ_URL", settings.database_read_url))
    healthy = True
    for name, url in targets:
        engine = make_engine(url, pool_size=1, application_name="tokens-bot-doctor")
        try:
            report = diagnose_database(engine, url, settings)
        finally:
            engine.dispose()
        print(format_doctor(name, report))
        healthy = healthy and all(check.present for check in report.indexes)
    return 0 if healthy else 1
