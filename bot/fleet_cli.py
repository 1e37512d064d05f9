"""`tokens-bot digest` and `tokens-bot doctor`: the fleet's command-line entry points, for cron and for ops."""

from __future__ import annotations

import argparse
import sys

from bot.bootstrap import build_service, prepare_database
from bot.console import blocks_as_text
from bot.delivery import web_client
from bot.render.common import Reply
from bot.render.fleet import render_digest
from bot.slack_api import WebSlack
from core.domain.errors import DigestNotPostedError
from core.domain.reports import DigestReport, DoctorReport
from core.settings import Settings
from core.store.db import make_engine
from core.store.doctor import diagnose_database


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    digest = sub.add_parser("digest", help="post the daily digest to a channel (for cron or a CronJob)")
    digest.add_argument("--channel", required=True, help="Slack channel ID, e.g. C0123456789")
    digest.add_argument(
        "--dry-run", action="store_true", help="print the digest instead of posting it, and remember nothing"
    )
    sub.add_parser("doctor", help="check indexes, row counts and pooler settings of the database(s)")


def digest(settings: Settings, channel: str, *, dry_run: bool) -> int:
    """Scan, post, and only then remember what was reported, so a failed post is reported again next time."""
    if not dry_run and not settings.slack_bot_token:
        print("tokens-bot digest needs SLACK_BOT_TOKEN (or --dry-run)", file=sys.stderr)
        return 2
    service = build_service(settings, prepare_database(settings))

    def publish(report: DigestReport) -> str | None:
        reply = render_digest(report)
        if dry_run:
            print(_as_text(reply))
            return None
        ts = WebSlack(web_client(settings), settings).post(channel, reply)
        if ts is None:
            raise DigestNotPostedError(f"Slack did not accept the digest for {channel}; see the log above.")
        return ts

    report = service.digest(channel, publish, remember=not dry_run)
    print(
        f"digest {'printed' if dry_run else f'posted to {channel}'}: {report.low.total:,} low balances,"
        f" {report.discrepant:,} discrepancies ({report.new:,} new, {report.resolved:,} resolved)"
    )
    return 0


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


def format_doctor(name: str, report: DoctorReport) -> str:
    lines = [
        f"== {name}: database {report.database} ==",
        f"server: {report.server_version}{' (read replica, in recovery)' if report.in_recovery else ''}",
    ]
    if report.pooler:
        prepared = (
            "prepared statements are off, as a transaction pooler needs"
            if report.prepared_statements_off
            else "WARNING: prepared statements are ON; add ?prepare_threshold=none to the URL"
        )
        lines.append(f"pooler: yes — {report.pooler}; {prepared}")
    else:
        where = (
            f"URL port {report.url_port}, server port {report.server_port}"
            if report.url_port or report.server_port
            else "a local socket"
        )
        lines.append(
            f"pooler: none seen ({where}); prepared statements {'off' if report.prepared_statements_off else 'on'}"
        )
    lines.append("rows (planner estimates):")
    lines += [
        f"  {table:<22} {'absent' if rows is None else f'{rows:,}'}"
        for table, rows in report.row_estimates.items()
    ]
    lines.append("indexes the bot relies on:")
    for check in report.indexes:
        where = f"{check.table} ({', '.join(check.columns)})"
        if check.present:
            lines.append(f"  ok       {where}: {check.present}")
        else:
            lines.append(f"  MISSING  {where} — {check.why}\n           {check.create_sql}")
    if not report.in_recovery:
        lines.append(f"bot schema revision: {report.bot_schema_revision or 'not migrated'}")
    lines.append("product schema, where it differs from the guide's, and what tokens-bot does about it:")
    lines += [f"  {n.subject}: {n.found} — {n.meaning}" for n in report.schema_notes] or ["  as the guide"]
    if report.odd_rows:
        lines.append("rows read by those rules (whole fleet):")
        lines += [f"  {count.rows:>12,}  {count.what}" for count in report.odd_rows]
    if report.action_types:
        lines.append("action types in the ledger (rows, successful tokens, read as):")
        for t in report.action_types:
            hint = f" — {t.hint}" if t.hint else ""
            lines.append(
                f"  {(t.action if t.action is not None else '(none)'):<32} {t.rows:>12,} {t.tokens:>16,}  {t.kind}{hint}"
            )
    if report.product_notes:
        lines.append("the product's meaning:")
        lines += [f"  {n.subject}: {n.found} — {n.meaning}" for n in report.product_notes]
    if report.suggested:
        lines.append("suggested settings (from the evidence above; check before you apply them):")
        lines += [f"  {line}" for line in report.suggested]
    return "\n".join(lines)
