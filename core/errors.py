"""Errors a user can cause; each message is fit to show them as it is."""

from __future__ import annotations


class TokensBotError(Exception):
    """A mistake or refusal the Slack layer turns into a friendly reply."""


class UsageError(TokensBotError):
    """The command text does not have the form the command needs."""


class NotAllowedError(TokensBotError):
    """The Slack user may not do this."""


class UserNotFoundError(TokensBotError):
    """No user matches the given UUID or email."""


class EmailLookupUnavailableError(TokensBotError):
    """The configured email source does not exist in this database."""


class DatabaseUnavailableError(TokensBotError):
    """The database could not be reached; nothing was changed."""


class ProductDataExistsError(TokensBotError):
    """The product tables already hold rows, so demo data is refused: it must never mix into real balances."""
