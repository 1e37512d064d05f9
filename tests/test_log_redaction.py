"""The log formatter: JSON lines in which secrets, Slack tokens, URL passwords, response URLs and emails never survive."""

from __future__ import annotations

import json
import logging
import sys

from bot.slack.audit import REDACTED, JsonFormatter, Redactor, email_digest
from core.settings import Settings


def test_redactor_scrubs_every_kind_of_secret() -> None:
    """Configured secrets, any Slack token, a URL's password, a response_url and emails are replaced."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_signing_secret="sign-me-0123456789",
        slack_bot_token="xoxb-configured-token",
        database_url="postgresql://bot:p%40ss-w0rd@db.example.com:6543/postgres",
    )
    redact = Redactor.for_settings(settings)
    text = redact(
        "sign-me-0123456789 xoxb-configured-token xapp-1-other-token p@ss-w0rd"
        " postgres://u:hunter2@h/db https://hooks.slack.com/commands/T1/2/abc Ada.Lovelace@Example.com"
    )
    for secret in (
        "sign-me",
        "configured-token",
        "other-token",
        "p@ss-w0rd",
        "hunter2",
        "commands/T1",
        "Lovelace",
    ):
        assert secret not in text
    assert text.count(REDACTED) == 6
    assert email_digest("ada.lovelace@example.com") in text


def test_json_lines_stay_valid_with_redacted_tracebacks() -> None:
    """A record with an exception becomes one JSON object whose traceback is redacted too."""
    formatter = JsonFormatter(Redactor(["s3cret-value"]))
    try:
        raise RuntimeError('failed for "ops@example.com" with s3cret-value\\')
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "boom %s", ("s3cret-value",), sys.exc_info()
        )
    entry = json.loads(formatter.format(record))
    assert entry["message"] == f"boom {REDACTED}" and entry["level"] == "error"
    assert "s3cret-value" not in entry["exception"] and "ops@example.com" not in entry["exception"]
    assert email_digest("ops@example.com") in entry["exception"]
