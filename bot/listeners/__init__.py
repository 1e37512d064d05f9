"""Bolt listeners: ack first, then hand Slack-free inputs to bot.routes and send the reply."""

from __future__ import annotations

from concurrent.futures import Executor

from slack_bolt import App

from bot.listeners import actions, commands
from core.services.service import TokensService


def register(app: App, service: TokensService, replies: Executor) -> None:
    """Every listener acks in the request's thread and computes its reply on `replies`."""
    commands.register(app, service, replies)
    actions.register(app, service, replies)
