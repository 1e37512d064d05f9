"""Bolt listeners: ack first, then hand Slack-free inputs to bot.handlers and send the reply."""

from __future__ import annotations

from slack_bolt import App

from bot.listeners import actions, commands
from core.service import TokensService


def register(app: App, service: TokensService) -> None:
    commands.register(app, service)
    actions.register(app, service)
