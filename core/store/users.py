"""Finding a user by UUID or email, the two ways operators name people."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, TextClause, text

from core.domain.errors import AmbiguousUserError, EmailLookupUnavailableError, UserNotFoundError
from core.domain.models import UserRef
from core.store.columns import Columns
from core.store.product import ProductShape

# An email shared by more users than this is listed only in part: the reply must stay readable.
_AMBIGUOUS_SHOWN = 10


def find_user(conn: Connection, cols: Columns, user: UUID | str) -> UserRef:
    """Resolve a UUID or an email to a user with a profile, or say precisely why not."""
    user_id = user_id_of(conn, cols, user)
    found = conn.execute(profile_sql(cols), {"u": user_id}).mappings().first()
    return user_ref(conn, cols, user_id, found)


def user_id_of(conn: Connection, cols: Columns, user: UUID | str) -> str:
    """The id a UUID or an email names, before its profile is read (`profile_sql`, then `user_ref`)."""
    named_by_email = isinstance(user, str) and "@" in user
    user_id = _id_for_email(conn, cols.shape, str(user)) if named_by_email else str(user)
    _require_comparable(cols, user_id)
    return user_id


def user_ref(conn: Connection, cols: Columns, user_id: str, found: Mapping[Any, Any] | None) -> UserRef:
    """The user `profile_sql` found, or why there is none (which takes one more query, on this rare path)."""
    if found is None:
        raise _no_profile(conn, cols, user_id)
    return UserRef(
        user_id=str(found["user_id"]),
        email=None if found["email"] is None else str(found["email"]),
        profile=_describe_row(found),
    )


def _no_profile(conn: Connection, cols: Columns, user_id: str) -> UserNotFoundError:
    """Why a user has no current profile row: only drafts, ledger rows without a profile, or nothing."""
    drafts, rows = conn.execute(
        text(
            f"SELECT (SELECT count(*) FROM user_profiles p WHERE p.user_id = {cols.user_param(cols.profiles)}),"
            f" (SELECT count(*) FROM token_usage t WHERE t.user_id = {cols.user_param(cols.ledger)})"
        ),
        {"u": user_id},
    ).one()
    if drafts:
        return UserNotFoundError(
            f"User {user_id} has only draft user_profiles rows ({drafts:,}), and a draft is never the"
            " current profile, so there is no balance to reconcile yet."
        )
    if rows:
        return UserNotFoundError(
            f"User {user_id} has {rows:,} ledger rows but no user_profiles row, so there is"
            " no balance to reconcile. Create the profile in the product first."
        )
    return UserNotFoundError(f"No user with id {user_id} was found in user_profiles.")


def _describe_row(found: Mapping[Any, Any]) -> str | None:
    """Which profile row a reply is about, where the user has several (versions, drafts)."""
    if found["profile_rows"] <= 1:
        return None
    facts = [f"row {found['profile_key']}"]
    if found["profile_active"] is not None:
        facts.append("active" if found["profile_active"] else "the latest updated, none active")
    if found["profile_version"] is not None:
        facts.append(f"version {found['profile_version']}")
    return f"{', '.join(facts)}; {found['profile_rows']:,} profile rows in all"


def _require_comparable(cols: Columns, user_id: str) -> None:
    """An id that cannot be a uuid matches nobody in a uuid column: say so instead of failing the cast."""
    if any(
        table.has("user_id") and table.column("user_id").base == "uuid"
        for table in (cols.profiles, cols.ledger)
    ):
        try:
            UUID(user_id)
        except ValueError:
            raise UserNotFoundError(f"No user with id {user_id} was found in user_profiles.") from None


def _id_for_email(conn: Connection, shape: ProductShape, email: str) -> str:
    if shape.email_source is None:
        raise EmailLookupUnavailableError(
            "Looking users up by email needs the email table, which this database does not have"
            " (see TOKENS_EMAIL_SOURCE). Use the user's UUID instead."
        )
    src = shape.email_source
    # lower() of the column as it is (no cast), so an index on lower(email) serves the lookup.
    found = conn.execute(
        text(
            f'SELECT "{src.id_column}"::text AS id, "{src.column}"::text AS email FROM {shape.email_table}'
            f' WHERE lower("{src.column}") = lower(:e) LIMIT {_AMBIGUOUS_SHOWN + 1}'
        ),
        {"e": email},
    ).all()
    if not found:
        raise UserNotFoundError(f"No user with email {email} was found.")
    if len({row.id for row in found}) > 1:
        listed = "; ".join(f"{row.email} is {row.id}" for row in found[:_AMBIGUOUS_SHOWN])
        more = " and more" if len(found) > _AMBIGUOUS_SHOWN else ""
        raise AmbiguousUserError(
            f"More than one user has the email {email} (letter case aside): {listed}{more}."
            " Name the user by id instead."
        )
    return str(found[0].id)


@lru_cache
def profile_sql(cols: Columns) -> TextClause:
    """One statement per product shape, built once: its text is what psycopg prepares per connection."""
    shape = cols.shape
    email = "NULL::text"
    if shape.email_source is not None and shape.email_id_type is not None:
        src = shape.email_source
        same = (
            f'e."{src.id_column}" = p.user_id'
            if shape.email_id_type == cols.profiles.column("user_id").type
            else f'e."{src.id_column}"::text = p.user_id::text'
        )
        email = f'(SELECT min(e."{src.column}"::text) FROM {shape.email_table} e WHERE {same})'
    rows = (
        "1"
        if shape.one_profile_per_user
        else "(SELECT count(*) FROM user_profiles a WHERE a.user_id = p.user_id)"
    )
    return text(
        f"SELECT p.user_id::text AS user_id, {cols.profile_facts('p')}, {rows} AS profile_rows, {email} AS email"
        f" FROM {cols.current_profiles('p')} WHERE p.user_id = {cols.user_param(cols.profiles)}"
    )
