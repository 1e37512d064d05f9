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


class NotConfiguredError(TokensBotError):
    """A setting this feature needs is missing; the message names it."""


class InvalidAdjustmentError(TokensBotError):
    """An adjustment or correction breaks a rule or limit (zero, too large, below zero)."""


class RequestNotFoundError(TokensBotError):
    """No approval request has the given number."""


class RequestRefusedError(TokensBotError):
    """This person may not decide this request now (their own request, their own grant, a closed request)."""


class StaleCorrectionError(TokensBotError):
    """The ledger changed since the correction was computed, so its values no longer hold."""


class DigestNotPostedError(TokensBotError):
    """Slack did not take the digest; nothing was remembered, so the next run reports the same news."""


class QueryTimeoutError(TokensBotError):
    """A statement ran past TOKENS_STATEMENT_TIMEOUT_MS and PostgreSQL cancelled it; nothing was changed."""


class AmbiguousUserError(TokensBotError):
    """A name matches more than one user (an email in two letter cases, several profile rows)."""


class ProductDataError(TokensBotError):
    """The product's database holds a value or grants a permission the bot cannot work with."""


class NothingToChartError(TokensBotError):
    """The user has no ledger rows at all, so a picture of their ledger would be empty."""


class ReplicaBehindError(TokensBotError):
    """The read replica did not catch up with the primary in time to fold or verify the ledger totals."""
