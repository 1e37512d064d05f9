"""Reading token amounts as people type them (`+50000`, `-1,200`, `50_000`, `50k`, `1.5M`), exactly."""

from __future__ import annotations

import re
from decimal import Decimal

from core.domain.errors import UsageError

_AMOUNT = re.compile(
    r"""^(?P<sign>[+-])?
    (?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)? | \d+(?:_\d+)*(?:\.\d+)? | \.\d+)
    (?P<suffix>[kKmM])?$""",
    re.VERBOSE,
)
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}
EXAMPLES = "`+50000`, `-1200`, `50_000`, `50,000`, `50k` or `1.5M`"


# The balance and ledger columns are bigint; an amount beyond them could never be stored or compared.
MAX_TOKENS = 2**63 - 1


def parse_amount(word: str) -> int:
    """A signed whole number of tokens; Decimal arithmetic so `1.5M` is exactly 1,500,000.

    A fraction of a token is refused rather than rounded: an admin who typed `1.0000005M` meant
    something, and guessing what would move a balance by an amount nobody asked for.
    """
    match = _AMOUNT.match(word.strip())
    if match is None:
        raise UsageError(f"`{word[:40]}` is not an amount of tokens. Write it like {EXAMPLES}.")
    number = Decimal(match["number"].replace(",", "").replace("_", ""))
    value = number * _SUFFIX[(match["suffix"] or "").lower()]
    if value != value.to_integral_value():
        raise UsageError(f"`{word[:40]}` is {value:,f} tokens; a balance moves by whole tokens only.")
    if abs(value) > MAX_TOKENS:
        raise UsageError(f"`{word[:40]}` is more tokens than any balance can hold (at most {MAX_TOKENS:,}).")
    return -int(value) if match["sign"] == "-" else int(value)
