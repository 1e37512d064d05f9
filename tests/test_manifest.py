"""The Slack app manifest agrees with the code: its command, the buttons' action ids and its scopes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from slack_sdk import WebClient

import bot.render.approvals
import bot.render.check
import bot.render.fleet
import bot.render.history
from bot.commands import PARSERS
from bot.forms import FORM_ACTIONS
from bot.listeners.commands import SLASH_COMMAND
from bot.routes import ACTION_ROUTES

ROOT = Path(__file__).resolve().parent.parent
# The scopes each Slack Web API method needs (api.slack.com/methods); users.info needs
# users:read.email to include the email the beneficiary check compares, and conversations.open of one
# person needs im:write.
SCOPES_BY_METHOD = {
    "chat_postMessage": {"chat:write"},
    "chat_update": {"chat:write"},
    "users_info": {"users:read", "users:read.email"},
    "files_getUploadURLExternal": {"files:write"},
    "files_completeUploadExternal": {"files:write"},
    "conversations_open": {"im:write"},
    # Modals and the Home tab need no scope: a trigger_id, or the person's own app_home_opened, suffices.
    "views_open": set(),
    "views_publish": set(),
}


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


def web_api_methods_the_code_calls() -> set[str]:
    """Every WebClient method called anywhere in bot/, found by reading the source."""
    source = "\n".join(path.read_text() for path in (ROOT / "bot").rglob("*.py"))
    methods = {name for name in dir(WebClient) if not name.startswith("_") and "_" in name}
    return {name for name in methods if re.search(rf"\.{name}\(", source)}


def test_manifest_declares_the_one_slash_command_with_every_subcommand() -> None:
    """/tokens is the only command, and its usage hint names exactly the subcommands the parser knows."""
    [command] = manifest()["features"]["slash_commands"]
    assert command["command"] == SLASH_COMMAND
    hinted = {part.split()[0] for part in command["usage_hint"].split("|")}
    assert hinted == set(PARSERS)


def test_every_button_the_bot_renders_has_a_listener_and_every_listener_a_button() -> None:
    """Action ids in the renderers and in the listeners agree, and interactivity is on for them."""
    rendered = {
        value
        for module in (bot.render.check, bot.render.approvals, bot.render.fleet, bot.render.history)
        for name, value in vars(module).items()
        if name.endswith("_ACTION") and isinstance(value, str)
    }
    assert rendered == set(ACTION_ROUTES) | FORM_ACTIONS
    assert manifest()["settings"]["interactivity"]["is_enabled"] is True


def test_scopes_are_exactly_what_the_code_uses() -> None:
    """No scope is requested that the code does not use, and none the code uses is missing."""
    called = web_api_methods_the_code_calls()
    assert called <= set(SCOPES_BY_METHOD), f"add the scopes of {called - set(SCOPES_BY_METHOD)}"
    needed = {"commands"}.union(*(SCOPES_BY_METHOD[m] for m in called))
    assert set(manifest()["oauth_config"]["scopes"]["bot"]) == needed


def test_socket_mode_is_on_and_http_urls_are_documented() -> None:
    """The manifest works in one paste for Socket Mode and says where HTTP mode's URLs go."""
    text = (ROOT / "manifest.yml").read_text()
    assert manifest()["settings"]["socket_mode_enabled"] is True
    assert text.count("/slack/events") >= 3


def test_the_one_event_subscribed_is_the_home_tab_and_the_tab_is_on() -> None:
    """The bot listens to app_home_opened and nothing else; the Home tab it publishes is enabled."""
    assert manifest()["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest()["features"]["app_home"]["home_tab_enabled"] is True
