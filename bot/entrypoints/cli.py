"""The `tokens-bot` command line: run the bot in any mode, migrate, make demo data."""

from __future__ import annotations

import argparse
import logging
import logging.config
import sys

from bot.bootstrap import build_service, prepare_database
from bot.entrypoints import jobs
from bot.slack.audit import audit_log, logging_config
from core.domain.errors import TokensBotError
from core.settings import Settings
from core.store.db import make_engine
from demo.data import fill_demo_database

CONSOLE_USER = "UCONSOLE"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokens-bot",
        description="Reconcile AI-token balances from Slack. With no subcommand: Socket Mode when"
        " SLACK_APP_TOKEN is set, HTTP when SLACK_SIGNING_SECRET is, else the local console.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="HTTP mode on PORT: POST /slack/events, GET /healthz")
    sub.add_parser("socket", help="Socket Mode (needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN)")
    console = sub.add_parser("console", help="type slash commands locally and read the replies")
    console.add_argument("--as", dest="actor", help="the Slack user id to act as")
    sub.add_parser("migrate", help="apply the bot's schema migrations")
    demo = sub.add_parser("demo-data", help="create the product tables and fill them with demo data")
    demo.add_argument("--force", action="store_true", help="add demo data even where product data exists")
    jobs.add_commands(sub)
    args = parser.parse_args(argv)

    settings = Settings()
    command = args.command or _default_mode(settings)
    if command in ("serve", "socket"):
        # Deployed modes log JSON lines for a log pipeline, secrets and emails redacted.
        logging.config.dictConfig(logging_config(settings))
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # At a terminal the audit lines would only interleave with the replies.
        logging.getLogger(audit_log.name).setLevel(logging.WARNING)
    # pgserver narrates every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        if command == "serve":
            return _serve(settings)
        if command == "socket":
            return _socket(settings)
        if command == "console":
            return _console(settings, getattr(args, "actor", None))
        if command == "migrate":
            prepare_database(settings)
            print(f"bot schema {settings.tokens_schema!r} is up to date")
            return 0
        if command == "demo-data":
            return _demo_data(settings, force=args.force)
        if command == "digest":
            return jobs.digest(settings, args.channel, dry_run=args.dry_run)
        if command == "tick":
            return jobs.tick(settings)
        if command == "rollup":
            return jobs.rollup(settings, full=args.full, verify=args.verify)
        if command == "doctor":
            return jobs.doctor(settings)
        if command == "audit-export":
            return jobs.audit_export(settings, args.since, args.format)
    except TokensBotError as exc:
        print(f"tokens-bot: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {command!r}")
    return 2


def _default_mode(settings: Settings) -> str:
    if settings.slack_app_token and settings.slack_bot_token:
        return "socket"
    if settings.slack_bot_token and settings.slack_signing_secret:
        return "serve"
    return "console"


def _serve(settings: Settings) -> int:
    from bot.entrypoints.http import serve

    if not settings.slack_signing_secret:
        print("tokens-bot serve needs SLACK_SIGNING_SECRET (and SLACK_BOT_TOKEN)", file=sys.stderr)
        return 2
    serve(settings, prepare_database(settings))
    return 0


def _socket(settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import build_app
    from bot.scheduler import TickLoop

    if not (settings.slack_app_token and settings.slack_bot_token):
        print("tokens-bot socket needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN", file=sys.stderr)
        return 2
    service = build_service(settings, prepare_database(settings))
    TickLoop.start_if_configured(service)
    SocketModeHandler(build_app(service, socket_mode=True), settings.slack_app_token).start()
    return 0


def _console(settings: Settings, actor: str | None) -> int:
    from bot.entrypoints.console import run_console

    if not (settings.tokens_admins or settings.tokens_viewers):
        # A fresh local setup has nobody configured: the console user is its admin, and a second
        # admin (`as UCONSOLE2`) is there to approve, since nobody approves their own request.
        settings = settings.model_copy(update={"tokens_admins": [CONSOLE_USER, f"{CONSOLE_USER}2"]})
    if not settings.tokens_approvals_channel:
        # The console prints what would be posted; the channel is only a name there.
        settings = settings.model_copy(update={"tokens_approvals_channel": "approvals"})
    actor = actor or (settings.tokens_admins or settings.tokens_viewers)[0]
    service = build_service(settings, prepare_database(settings))
    print(
        f"tokens-bot console on {'DATABASE_URL' if settings.database_url else 'the embedded demo database'}"
    )
    run_console(service, actor)
    return 0


def _demo_data(settings: Settings, *, force: bool) -> int:
    engine = make_engine(prepare_database(settings), pool_size=1)
    try:
        summary = fill_demo_database(engine, force=force)
    finally:
        engine.dispose()
    print(f"demo data: {summary.users} users, {summary.ledger_rows} ledger rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
