"""What every request pays for in the bot itself stays paid once: no middleware Bolt must build arguments
for, and reply clients copied from one made at start, each aimed at its own response URL."""

from __future__ import annotations

from slack_bolt.middleware.custom_middleware import CustomMiddleware
from sqlalchemy import Engine

from bot.app import build_app
from bot.slack.delivery import RetryingRespond, reply_client
from core.services.service import TokensService
from core.settings import Settings


def test_no_middleware_goes_through_bolts_argument_building(engine: Engine, database_url: str) -> None:
    """A function registered with `app.use` becomes a CustomMiddleware, which builds every argument a
    listener could ask for on each request; the bot's middleware are all called directly."""
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        slack_signing_secret="the-real-secret",
        slack_bot_token="xoxb-test",
        slack_api_url="http://127.0.0.1:9/api/",
    )
    app = build_app(TokensService(settings, engine))
    names = [type(m).__name__ for m in app._middleware_list]
    assert not [m for m in app._middleware_list if isinstance(m, CustomMiddleware)], names
    assert {"_MarkVerified", "_RefuseReplays", "_LimitCommands", "_ReliableRespond", "_Provide"} <= set(names)


def test_each_reply_posts_to_its_own_response_url_with_the_shared_settings() -> None:
    settings = Settings(_env_file=None)
    template = reply_client(settings)
    first = RetryingRespond(response_url="http://127.0.0.1:9/response/a", client=template)
    second = RetryingRespond(response_url="http://127.0.0.1:9/response/b", client=template)
    assert first.client is not None and second.client is not None
    assert (first.client.url, second.client.url, template.url) == (
        "http://127.0.0.1:9/response/a",
        "http://127.0.0.1:9/response/b",
        "",
    )
    assert first.client.retry_handlers is template.retry_handlers
    assert first.client.timeout == settings.tokens_slack_timeout_seconds
    assert RetryingRespond(response_url=None, client=template).client is None
