"""Signature verification in HTTP mode has no off switch, in the settings or anywhere in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine

from bot.app import build_app
from core.services.service import TokensService
from core.settings import Settings

# Names someone might hope would skip verification: Bolt's own constructor flag spelled as environment
# variables, and a few plausible inventions.
HOPEFUL_SWITCHES = {
    "SLACK_REQUEST_VERIFICATION_ENABLED": "false",
    "REQUEST_VERIFICATION_ENABLED": "0",
    "TOKENS_REQUEST_VERIFICATION_ENABLED": "false",
    "TOKENS_VERIFY_SIGNATURES": "false",
    "TOKENS_SKIP_SIGNATURE_CHECK": "true",
    "SLACK_SIGNATURE_VERIFICATION": "off",
    "TOKENS_INSECURE": "1",
}


def test_no_setting_can_turn_verification_off() -> None:
    """The settings model's only signature-related field is the secret itself."""
    related = {
        name
        for name in Settings.model_fields
        if any(word in name for word in ("verif", "signature", "signing", "insecure", "skip"))
    }
    assert related == {"slack_signing_secret"}


def test_unsigned_requests_are_refused_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, database_url: str
) -> None:
    """With every hopeful switch set, the HTTP app still answers an unsigned or mis-signed request with 401."""
    for name, value in HOPEFUL_SWITCHES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "the-real-secret")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    app = build_app(TokensService(Settings(_env_file=None), engine))  # type: ignore[call-arg]
    body = urlencode({"command": "/tokens", "text": "help", "user_id": "UADMIN1"})
    ts = str(int(time.time()))
    wrong = SignatureVerifier("another-secret").generate_signature(timestamp=ts, body=body)
    for headers in ({}, {"x-slack-request-timestamp": ts, "x-slack-signature": wrong}):
        assert app.dispatch(BoltRequest(body=body, headers=headers)).status == 401
    right = SignatureVerifier("the-real-secret").generate_signature(timestamp=ts, body=body)
    signed = BoltRequest(body=body, headers={"x-slack-request-timestamp": ts, "x-slack-signature": right})
    assert app.dispatch(signed).status != 401  # the control: the same request, signed, gets through


def test_serve_refuses_to_start_without_a_signing_secret(database_url: str) -> None:
    """`tokens-bot serve` with a bot token but no SLACK_SIGNING_SECRET exits 2 and says why."""
    env = {k: v for k, v in os.environ.items() if k != "SLACK_SIGNING_SECRET"}
    env.update(HOPEFUL_SWITCHES, DATABASE_URL=database_url, SLACK_BOT_TOKEN="xoxb-test")
    done = subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "SLACK_SIGNING_SECRET" in done.stderr
