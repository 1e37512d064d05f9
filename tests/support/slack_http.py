"""Sending Slack's requests to the bot exactly as Slack does: form-encoded, timestamped and signed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from tests.support.fake_slack import FakeSlack


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    seconds: float


class SlackClient:
    """Posts signed slash commands and button clicks to a running bot's `/slack/events`."""

    def __init__(self, bot_url: str, signing_secret: str, response_base: str) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.response_base = response_base

    def command(
        self, text: str, *, user: str = "UADMIN1", response_name: str | None = None, **overrides: Any
    ) -> tuple[HttpResult, str]:
        """Run `/tokens <text>` as `user`; returns the HTTP result and the response URL's name."""
        name = response_name or uuid.uuid4().hex
        form = {
            "token": "legacy-verification-token",
            "team_id": "T1",
            "team_domain": "example",
            "channel_id": "C1",
            "channel_name": "ops",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/tokens",
            "text": text,
            "api_app_id": "A1",
            "response_url": f"{self.response_base}/response/{name}",
            "trigger_id": "1.2.3",
        }
        form.update(overrides)
        return self.post(urlencode(form).encode()), name

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "UADMIN1",
        response_name: str | None = None,
        message: dict[str, Any] | None = None,
        channel: str = "C1",
    ) -> tuple[HttpResult, str]:
        """Press a button as `user`: a signed `block_actions` payload, as Slack sends interactivity."""
        name = response_name or uuid.uuid4().hex
        payload = {
            "type": "block_actions",
            "team": {"id": "T1", "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": "1.000100", "channel_id": channel},
            "trigger_id": "1.2.3",
            "channel": {"id": channel, "name": "ops"},
            "message": message or {"ts": "1.000100", "text": "", "blocks": []},
            "response_url": f"{self.response_base}/response/{name}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self.post(urlencode({"payload": json.dumps(payload)}).encode()), name

    def submit(self, form: dict[str, Any], values: dict[str, str], *, user: str = "UADMIN1") -> HttpResult:
        """Submit a modal the bot opened (`form`, the view it sent to views.open) with `values` typed into
        its fields by name, as Slack's signed `view_submission`; the ack's body carries field errors."""
        state = {
            block["block_id"]: {"value": {"type": "plain_text_input", "value": values.get(block["block_id"])}}
            for block in form["blocks"]
            if block["type"] == "input"
        }
        payload = {
            "type": "view_submission",
            "team": {"id": "T1", "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": "1.2.4",
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": form["callback_id"],
                "private_metadata": form.get("private_metadata", ""),
                "state": {"values": state},
                "hash": "1.abc",
                "blocks": form["blocks"],
            },
        }
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())

    def event(self, event: dict[str, Any]) -> HttpResult:
        """Deliver an Events API event (such as `app_home_opened`) as Slack does: signed JSON."""
        envelope = {
            "token": "legacy-verification-token",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10]}",
            "event_time": int(time.time()),
            "event": event,
        }
        return self.post(json.dumps(envelope).encode(), content_type="application/json")

    def post(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> HttpResult:
        """POST a raw body, signed unless a test overrides the timestamp or signature."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sig = signature or SignatureVerifier(self.signing_secret).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            f"{self.bot_url}/slack/events",
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
            },
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return HttpResult(response.status, response.read().decode(), time.perf_counter() - started)
        except urllib.error.HTTPError as error:
            return HttpResult(error.code, error.read().decode(), time.perf_counter() - started)


def ask(slack: SlackClient, fake_slack: FakeSlack, text: str, user: str = "UADMIN1") -> dict[str, Any]:
    """Run `/tokens <text>` as `user` and return the reply the bot posted to the command's response URL."""
    result, name = slack.command(text, user=user)
    assert result.status == 200, result.body
    [body] = fake_slack.responses(name)
    return body


def press(
    slack: SlackClient,
    fake_slack: FakeSlack,
    action_id: str,
    value: str,
    *,
    user: str = "UADMIN2",
    channel: str = "CAPPROVALS",
) -> dict[str, Any]:
    """Press a button as `user` (an approver, by default, on the approvals channel) and return the answer
    the bot posted to the click's response URL."""
    result, name = slack.click(action_id, value, user=user, channel=channel)
    assert result.status == 200, result.body
    [body] = fake_slack.responses(name)
    return body


def reply_text(body: dict[str, Any]) -> str:
    """Everything a person would read in a message: the fallback and every block's text."""
    return str(body.get("text", "")) + "\n" + json.dumps(body.get("blocks", []), ensure_ascii=False)


def buttons(body: dict[str, Any]) -> dict[str, str]:
    """A message's buttons, action_id -> value, for pressing them as Slack would."""
    return {
        e["action_id"]: e.get("value", "")
        for b in body.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
    }
