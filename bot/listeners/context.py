"""The keys under which bot.listeners' middleware puts the service and the reply executor in Bolt's context."""

SERVICE = "tokens_bot_service"
REPLIES = "tokens_bot_replies"
