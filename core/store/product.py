"""What the product's database looks like, read once from the catalog: the bot owns none of it.

Columns may be missing, nullable, or of another type than the guide's; `user_profiles` may be a view;
row-level security may hide rows from the bot's role. Everything a query needs to know about that is
here, and core.store.columns turns it into the one SQL reading of each column that every query shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from types import MappingProxyType

from core.settings import EmailSource, TierTable

LEDGER = "token_usage"
PROFILES = "user_profiles"
# The guide's columns; the bot can work without any of the optional ones.
LEDGER_REQUIRED = ("id", "user_id", "action_type", "tokens_used", "created_at")
LEDGER_OPTIONAL = (
    "model_used",
    "input_tokens",
    "output_tokens",
    "cost_estimate",
    "success",
    "error_message",
    "metadata",
)
PROFILE_REQUIRED = ("user_id",)
PROFILE_BALANCES = (
    "vibe_assistant_tokens_remaining",
    "vibe_assistant_tokens_used",
    "vibe_assistant_total_cost",
)

_INTEGER_TYPES: dict[str, int] = {
    "smallint": 32_767,
    "integer": 2_147_483_647,
    "bigint": 9_223_372_036_854_775_807,
}
_FLOAT_TYPES = {"real", "double precision"}
# A double holds every integer up to 2**53 exactly; past that the bot refuses to write one.
_FLOAT_EXACT_LIMIT = 2**53


@dataclass(frozen=True)
class Column:
    """One column as the catalog describes it."""

    name: str
    type: str
    """`format_type` of the column: `bigint`, `numeric(10,4)`, `timestamp with time zone`, an enum's name."""
    nullable: bool
    has_default: bool
    precision: int | None = None
    scale: int | None = None
    enum: bool = False
    check_values: tuple[str, ...] | None = None
    default: str | None = None
    """The column's default as SQL text (`100`, `now()`), where it has one."""

    @property
    def base(self) -> str:
        """The type without its modifiers: `numeric(10,4)` → `numeric`."""
        return self.type.split("(")[0]

    @property
    def is_integer(self) -> bool:
        return self.base in _INTEGER_TYPES

    @property
    def is_float(self) -> bool:
        return self.base in _FLOAT_TYPES

    @property
    def is_numeric(self) -> bool:
        return self.base == "numeric"

    @property
    def largest(self) -> int | None:
        """The largest whole number the column stores exactly, or None when it has no such limit."""
        if self.is_integer:
            return _INTEGER_TYPES[self.base]
        if self.is_float:
            return _FLOAT_EXACT_LIMIT
        if self.is_numeric and self.precision is not None:
            digits: int = self.precision - (self.scale or 0)
            return int(10**digits) - 1
        return None


@dataclass(frozen=True)
class Table:
    """A product table or view: its kind and its columns, by name."""

    name: str
    kind: str
    """`table`, `view`, `materialized view`, `partitioned table`, `foreign table`, or `missing`."""
    columns: tuple[Column, ...]
    row_security: bool = False
    """True when row-level security applies to the bot's role here: some rows may be invisible to it."""
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    """Column lists of the unique indexes without a predicate (the primary key among them)."""

    @cached_property
    def by_name(self) -> Mapping[str, Column]:
        """Built once: every statement and every reading of a row asks `has` and `column` again."""
        return MappingProxyType({c.name: c for c in self.columns})

    def has(self, name: str) -> bool:
        return name in self.by_name

    def column(self, name: str) -> Column:
        return self.by_name[name]


@dataclass(frozen=True)
class ProductShape:
    """Facts about the product schema that vary between deployments; hashable, so queries cache per shape."""

    ledger: Table
    profiles: Table
    email_source: EmailSource | None
    email_id_type: str | None
    tier_column: str | None
    bot_schema: str
    tier_table: TierTable | None = None
    """TOKENS_TIER_TABLE, where that table and its columns exist."""

    @cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    def __hash__(self) -> int:
        """Hashed once: every statement is cached by the shape (through its Columns), and hashing every column
        of every table on each look-up cost a check more than the look-ups themselves."""
        return self._hash

    @property
    def email_table(self) -> str:
        """The quoted, schema-qualified email table; identifiers were validated by the settings."""
        assert self.email_source is not None
        src = self.email_source
        return f'"{src.schema_name}"."{src.table}"'

    @property
    def cost_scale(self) -> int:
        """Digits after the point of the profile's cost: the scale the ledger's cost is compared at."""
        if not self.profiles.has(PROFILE_BALANCES[2]):
            return 6
        scale = self.profiles.column(PROFILE_BALANCES[2]).scale
        # An unconstrained numeric or a float keeps many digits; cents/100 needs at most 6 for 4-dp cents.
        return scale if scale is not None else 6

    @property
    def hidden_rows(self) -> bool:
        """Row-level security may hide ledger or profile rows from the bot: totals are then partial."""
        return self.ledger.row_security or self.profiles.row_security

    @property
    def one_profile_per_user(self) -> bool:
        """user_id is unique in user_profiles, so a user's row needs no choosing."""
        return ("user_id",) in self.profiles.unique

    @property
    def remaining_default(self) -> int | None:
        """The default of the remaining column when it is a whole number (a product's untracked start)."""
        if not self.profiles.has(PROFILE_BALANCES[0]):
            return None
        default = (self.profiles.column(PROFILE_BALANCES[0]).default or "").strip("()")
        return int(default) if default.isdigit() else None

    @property
    def has_balances(self) -> bool:
        """The product caches a balance at all (later eras dropped the columns for a computed one)."""
        return self.profiles.has(PROFILE_BALANCES[0])

    @property
    def hidden_tables(self) -> list[str]:
        """Tables whose rows row-level security may hide from the bot's role."""
        return [t.name for t in (self.ledger, self.profiles) if t.row_security]

    @cached_property
    def missing(self) -> tuple[str, ...]:
        """Required tables and columns that are not there: the bot cannot reconcile without them (asked by
        every use case, so worked out once)."""
        gaps = [f"{t.name} (table)" for t in (self.ledger, self.profiles) if t.kind == "missing"]
        for table, names in ((self.ledger, LEDGER_REQUIRED), (self.profiles, PROFILE_REQUIRED)):
            if table.kind != "missing":
                gaps += [f"{table.name}.{name}" for name in names if not table.has(name)]
        return tuple(gaps)
