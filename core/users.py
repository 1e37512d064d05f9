"""Finding a user by UUID or email, the two ways operators name people."""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID

from sqlalchemy import Connection, TextClause, text

from core.errors import EmailLookupUnavailableError, UserNotFoundError
from core.models import UserRef
from core.product import ProductShape


def find_user(conn: Connection, shape: ProductShape, user: UUID | str) -> UserRef:
    """Resolve a UUID or an email to a user with a profile, or say precisely why not."""
    user_id = user if isinstance(user, UUID) else _id_for_email(conn, shape, user)
    # The profile's existence and the email in one round trip.
    found = conn.execute(_profile_sql(shape), {"u": user_id}).first()
    if found is None:
        rows = conn.execute(
            text("SELECT count(*) FROM token_usage WHERE user_id = :u"), {"u": user_id}
        ).scalar_one()
        if rows:
            raise UserNotFoundError(
                f"User `{user_id}` has {rows:,} ledger rows but no `user_profiles` row, so there is"
                " no balance to reconcile. Create the profile in the product first."
            )
        raise UserNotFoundError(f"No user with id `{user_id}` was found in `user_profiles`.")
    return UserRef(user_id=user_id, email=None if found.email is None else str(found.email))


def _id_for_email(conn: Connection, shape: ProductShape, email: str) -> UUID:
    if shape.email_source is None:
        raise EmailLookupUnavailableError(
            "Looking users up by email needs the email table, which this database does not have"
            " (see TOKENS_EMAIL_SOURCE). Use the user's UUID instead."
        )
    src = shape.email_source
    found = conn.execute(
        text(
            f'SELECT "{src.id_column}" FROM {shape.email_table}'
            f' WHERE lower("{src.column}") = lower(:e) LIMIT 1'
        ),
        {"e": email},
    ).scalar_one_or_none()
    if found is None:
        raise UserNotFoundError(f"No user with email `{email}` was found.")
    return UUID(str(found))


@lru_cache
def _profile_sql(shape: ProductShape) -> TextClause:
    """One statement per product shape, built once: its text is what psycopg prepares per connection."""
    email = "NULL"
    if shape.email_source is not None:
        src = shape.email_source
        email = f'(SELECT "{src.column}" FROM {shape.email_table} WHERE "{src.id_column}" = p.user_id)'
    return text(f"SELECT {email} AS email FROM user_profiles p WHERE p.user_id = :u")
