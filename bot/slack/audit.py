"""Structured JSON logs: one line per command saying who looked up whom, never a secret or an email in clear."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from bot import buttons
from bot.commands import PARSERS
from core.settings import Settings

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Slack tokens (bot, user, app-level, refresh) have recognisable prefixes whatever their value.
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abeprs]|app)-[A-Za-z0-9-]+")
# A response_url lets whoever holds it post into the channel for half an hour.
_RESPONSE_URL = re.compile(r"(https://hooks\.slack\.com/)[^\s\"']+")
# The password part of any URL with credentials, `scheme://user:password@host`.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")
REDACTED = "[redacted]"

audit_log = logging.getLogger("tokens_bot.audit")


def email_digest(email: str) -> str:
    """The email's stand-in in logs: `email:` and 16 hex digits of the SHA-256 of its lowercase form.

    Stable, so an auditor can find every lookup of one address
    (`printf %s ada@example.com | sha256sum | cut -c1-16`), yet the log itself holds no address.
    """
    return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


class Redactor:
    """Scrubs a finished log line: known secret values, anything shaped like a Slack token, URL passwords
    and email addresses. Applied to the whole line, tracebacks included, since an exception's message
    may quote what the code never meant to log."""

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        secrets = [
            settings.slack_signing_secret or "",
            settings.slack_bot_token or "",
            settings.slack_app_token or "",
        ]
        for url in (settings.database_url, settings.database_read_url):
            password = urlsplit(url).password if url else None
            if password:
                secrets += [password, unquote(password)]
        return cls(secrets)

    def __call__(self, text: str) -> str:
        """Each pattern runs only on text holding the literal it cannot match without (a token's `xox` or
        `xapp-`, the hooks URL, `://`, `@`): the same result, and most fields of an audit line (names,
        outcomes, ids) hold none of them, so a line no longer costs four regular expressions per field."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if "xox" in text or "xapp-" in text:
            text = _SLACK_TOKEN.sub(REDACTED, text)
        if "://" in text:
            text = _RESPONSE_URL.sub(rf"\g<1>{REDACTED}", text)
            text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)
        if "@" in text:
            text = _EMAIL.sub(lambda m: email_digest(m.group(0)), text)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, an audit record's fields at the top level, every text redacted."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor.for_settings(Settings())

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "audit", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Each text is scrubbed before encoding, so a redaction can never break the JSON's escaping.
        redacted = {k: self.redactor(v) if isinstance(v, str) else v for k, v in entry.items()}
        return json.dumps(redacted, ensure_ascii=False, default=str)


def logging_config(settings: Settings) -> dict[str, Any]:
    """`logging.config.dictConfig` for the deployed modes: everything, gunicorn's own lines included, as
    JSON on stderr. gunicorn's access log stays off: the audit line per command says more, and safely."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "redactor": Redactor.for_settings(settings)}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def _target(user: object) -> str | None:
    if isinstance(user, UUID):
        return str(user)
    if isinstance(user, str) and "@" in user:
        return email_digest(user)
    return None


@dataclass(frozen=True)
class Audited:
    """What a command or button press was, for the audit log: its name and whom it named, never its text."""

    kind: str
    name: str
    slack_user: str
    target: str | None = None

    @classmethod
    def command(cls, slack_user: str, text: str, command: object | None) -> Audited:
        """`command` is the text as bot.routes parsed it (None when it did not parse): never parsed twice."""
        words = text.split()
        name = words[0].lower() if words else "help"
        if name not in PARSERS:
            # Free text the bot does not understand may be anything; it is not logged.
            return cls("command", "unknown" if words else "help", slack_user)
        return cls("command", name, slack_user, _target(getattr(command, "user", None)))

    @classmethod
    def action(cls, slack_user: str, action_id: str, value: str) -> Audited:
        """Whom the button names, if its value names anyone validly; a damaged value never raises here."""
        user = buttons.user_of(value)
        target = None if user is None else (email_digest(user) if "@" in user else user)
        return cls("action", action_id[:64], slack_user, target)

    def record(self, outcome: str, started: float, error: type[BaseException] | None = None) -> None:
        """Log the outcome (`ok`, `refused`, `rate_limited`, `failed`) and how long the answer took."""
        fields = {
            "event": self.kind,
            "command": self.name,
            "slack_user": self.slack_user,
            "target_user": self.target,
            "outcome": outcome,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if error is not None:
            fields["error"] = error.__name__
        audit_log.info("%s %s: %s", self.kind, self.name, outcome, extra={"audit": fields})

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} by {self.slack_user}"
