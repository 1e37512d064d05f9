"""Data-quality notes: the rows and profile values the bot had to interpret, told with their counts.

Each note names what was odd and what it was read as, so a check never looks cleaner than the data is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.domain.models import Balance, DataQualityKind, DataQualityNote

_MEANINGS: dict[DataQualityKind, str] = {
    DataQualityKind.NULL_TOKENS: "ledger rows have no tokens_used; each counts as 0 tokens",
    DataQualityKind.NULL_COST: "successful usage rows have no cost_estimate; each counts as 0 cents",
    DataQualityKind.NULL_SUCCESS: "ledger rows have no success value; each counts as a success (charged)",
    DataQualityKind.NULL_TIME: "ledger rows have no created_at; each counts as older than every dated row,"
    " and never as recent",
    DataQualityKind.FUTURE_TIME: "ledger rows are dated in the future; they count in the balance but never"
    " as recent activity",
    DataQualityKind.NULL_ACTION: "ledger rows have no action_type; each counts as usage",
    DataQualityKind.NEAR_MISS_ACTION: "ledger rows spell a grant or deduction type with other case or spaces;"
    " they count as usage, as configured. If they are grants or deductions, add that exact spelling to"
    " TOKENS_GRANT_ACTIONS or TOKENS_DEDUCT_ACTIONS",
    DataQualityKind.NEGATIVE_TOKENS: "ledger rows have negative tokens_used; each counts as it stands,"
    " reducing the sum it belongs to",
    DataQualityKind.ODD_METADATA: "ledger rows hold metadata that is not a JSON object (an array, a scalar or"
    " invalid JSON); it counts as no metadata",
}


def ledger_notes(row: Mapping[str, Any]) -> list[DataQualityNote]:
    """One note per kind of odd ledger row, from the `<kind>_rows` and `<kind>_tokens` counts of a query."""
    notes = []
    for kind, meaning in _MEANINGS.items():
        rows = int(row[f"{kind.value}_rows"])
        if rows:
            tokens = int(row[f"{kind.value}_tokens"])
            amount = f" ({tokens:,} tokens)" if tokens and kind is not DataQualityKind.NULL_TOKENS else ""
            said = meaning if rows > 1 else _singular(meaning)
            notes.append(
                DataQualityNote(kind=kind, rows=rows, tokens=tokens, summary=f"{rows:,} {said}{amount}.")
            )
    return notes


_SINGULAR = (
    ("rows have", "row has"),
    ("rows are", "row is"),
    ("rows spell", "row spells"),
    ("rows hold", "row holds"),
    ("they count", "it counts"),
    ("If they are", "If it is"),
)


def _singular(meaning: str) -> str:
    for plural, singular in _SINGULAR:
        meaning = meaning.replace(plural, singular)
    return meaning


def profile_notes(balance: Balance, hidden_tables: list[str]) -> list[DataQualityNote]:
    """NULL balance columns, and rows the bot's role may not see."""
    notes = []
    if balance.unset:
        names = ", ".join(balance.unset)
        notes.append(
            DataQualityNote(
                kind=DataQualityKind.PROFILE_UNSET,
                rows=1,
                summary=f"The profile's {names} is not set (NULL); it is read as 0, as the product's own code"
                " reads it. An approved adjustment or correction writes a value.",
            )
        )
    if hidden_tables:
        tables = hidden_tables
        notes.append(
            DataQualityNote(
                kind=DataQualityKind.HIDDEN_ROWS,
                rows=0,
                summary=f"Row-level security is on for {' and '.join(tables)} and tokens-bot's database role"
                " does not bypass it: rows hidden from it are not counted, so this check cannot be called"
                " reconciled. Give the role BYPASSRLS or a policy that shows it every row.",
            )
        )
    return notes
