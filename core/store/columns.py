"""The one reading of every product column, as SQL: what a NULL, an odd type or an odd value counts as.

Every query (check, findings, scans, digest, approvals) builds its SQL from these expressions, so an odd
row means the same thing everywhere; README "Your product's schema" states each meaning in words.
All arithmetic stays exact: tokens are whole numbers, cents and dollars `numeric`, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from core.settings import Settings
from core.store.product import ProductShape
from core.store.profile_columns import COST, REMAINING, USED, ProfileColumns, whole

__all__ = ["COST", "REMAINING", "USED", "Columns", "literal"]
# Rows dated outside what Python's datetime holds (or infinity) are shown as "unknown time".
_SHOWN_FROM, _SHOWN_TO = "'0001-01-02 00:00:00+00'", "'9999-12-30 00:00:00+00'"
# An integer id shifted by 2**63 is non-negative, so its zero-padded text sorts as the number does.
_ID_SHIFT = 9_223_372_036_854_775_808
TIME_KEY_WIDTH = 20
# Seconds added to the epoch so the earliest time PostgreSQL holds (4713 BC, about -2.1e11 s) is positive;
# the latest (year 294276, about 9.2e12 s) still fits TIME_KEY_WIDTH digits of microseconds.
_EPOCH_SHIFT = 300_000_000_000


def literal(value: str) -> str:
    """A SQL string literal; used only for values from the bot's own settings."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Columns(ProfileColumns):
    """SQL expressions over the ledger (any alias) and the profiles, for one product shape and settings."""

    grant_actions: tuple[str, ...] = ()
    deduct_actions: tuple[str, ...] = ()
    reset_actions: tuple[str, ...] = ()

    @classmethod
    def of(cls, shape: ProductShape, settings: Settings) -> Columns:
        """The Columns of a shape and settings, made once: every use case asks for them again."""
        return _columns(
            shape,
            settings.tokens_cost_unit == "cents",
            tuple(settings.tokens_grant_actions),
            tuple(settings.tokens_deduct_actions),
            tuple(settings.tokens_reset_actions),
        )

    # --- token_usage -------------------------------------------------------------------------------

    def tokens(self, a: str) -> str:
        """Tokens of a row; NULL stays NULL here (sums skip it: a NULL row counts 0 tokens)."""
        return whole(f"{a}.tokens_used", self.ledger.column("tokens_used"))

    def part_tokens(self, a: str, name: str) -> str:
        """input_tokens or output_tokens, NULL where the product has no such column."""
        if not self.ledger.has(name):
            return "NULL::numeric"
        return whole(f"{a}.{name}", self.ledger.column(name))

    def cents(self, a: str) -> str:
        """cost_estimate as exact numeric cents (integer and float columns converted); NULL counts 0."""
        if not self.ledger.has("cost_estimate"):
            return "NULL::numeric"
        column = self.ledger.column("cost_estimate")
        return f"{a}.cost_estimate" if column.is_numeric else f"{a}.cost_estimate::numeric"

    def success(self, a: str) -> str:
        """A NULL success counts as a success: the product charged it unless it said it failed."""
        if not self.ledger.has("success"):
            return "true"
        column = self.ledger.column("success")
        if column.base == "boolean":
            return f"coalesce({a}.success, true)"
        return f"coalesce(lower({a}.success::text) NOT IN ('false', 'f', '0', 'no', 'n'), true)"

    def action(self, a: str) -> str:
        """The action type as text (enums too), spelled exactly as stored."""
        return f"{a}.action_type::text"

    def _among(self, a: str, actions: tuple[str, ...]) -> str:
        if not actions:
            return "false"
        return f"coalesce({self.action(a)} IN ({', '.join(literal(x) for x in actions)}), false)"

    def is_grant(self, a: str) -> str:
        return self._among(a, self.grant_actions)

    def is_deduct(self, a: str) -> str:
        return self._among(a, self.deduct_actions)

    def is_reset(self, a: str) -> str:
        """A row whose tokens set the balance (TOKENS_RESET_ACTIONS)."""
        return self._among(a, self.reset_actions)

    @property
    def classified(self) -> tuple[str, ...]:
        return self.grant_actions + self.deduct_actions + self.reset_actions

    def is_usage(self, a: str) -> str:
        """Consumption: every row that is no grant, deduction or reset, a NULL action type included.

        Types are matched exactly as configured: normalising case and spaces on every row would cost the
        whole-ledger scan more than the scan itself, so near misses are reported instead (`near_miss`).
        """
        return f"NOT {self._among(a, self.classified)}"

    def after_reset(self, a: str, r: str) -> str:
        """Rows after the reset row `r` (its created_at and id, NULL where the user has none), in the
        ledger's order: by time, a NULL time first, then by id. Without resets configured, every row."""
        if not self.reset_actions:
            return "true"
        return (
            f"({r}.reset_id IS NULL OR (coalesce({a}.created_at, '-infinity'), {a}.id)"
            f" > (coalesce({r}.reset_created, '-infinity'), {r}.reset_id))"
        )

    def near_miss(self, a: str) -> str:
        """Usage whose type differs from a grant or deduction type only by case or spaces: reported, with
        the setting that would classify it, but counted as configured (as usage)."""
        known = self.classified
        if not known:
            return "false"
        lowered = ", ".join(literal(x.strip().lower()) for x in known)
        return f"({self.is_usage(a)} AND lower(btrim({self.action(a)})) IN ({lowered}))"

    def created(self, a: str) -> str:
        """The row's time as timestamptz; a `timestamp without time zone` column is read as UTC."""
        base = self.ledger.column("created_at").base
        if base == "timestamp with time zone":
            return f"{a}.created_at"
        if base in ("timestamp without time zone", "date"):
            return f"({a}.created_at::timestamp AT TIME ZONE 'UTC')"
        return "NULL::timestamptz"

    def shown_time(self, a: str) -> str:
        """`created` where Python can hold it; NULL (shown as an unknown time) otherwise."""
        created = self.created(a)
        return f"CASE WHEN {created} BETWEEN {_SHOWN_FROM} AND {_SHOWN_TO} THEN {created} END"

    def is_recent(self, a: str, interval: str) -> str:
        """Inside [now - interval, now]: a future-dated row is never recent, a NULL-dated one neither."""
        created = self.created(a)
        return f"coalesce({created} BETWEEN now() - {interval} AND now(), false)"

    def is_future(self, a: str) -> str:
        return f"coalesce({self.created(a)} > now(), false)"

    def metadata(self, a: str) -> str | None:
        """The metadata as json or jsonb, whichever the column holds; text is parsed (invalid → NULL)."""
        if not self.ledger.has("metadata"):
            return None
        base = self.ledger.column("metadata").base
        if base in ("json", "jsonb"):
            return f"{a}.metadata"
        if base in ("text", "character varying", "character"):
            return f'"{self.shape.bot_schema}".jsonb_or_null({a}.metadata::text)'
        return None

    def meta(self, a: str, key: str) -> str:
        """One key of the metadata object as text; NULL for any other JSON value, or none."""
        document = self.metadata(a)
        return f"({document} ->> {literal(key)})" if document else "NULL::text"

    def metadata_is_odd(self, a: str) -> str:
        """Metadata that holds something other than a JSON object (array, scalar, invalid text)."""
        if not self.ledger.has("metadata"):
            return "false"
        document = self.metadata(a)
        if document is None:
            return f"{a}.metadata IS NOT NULL"
        typeof = "json_typeof" if self.ledger.column("metadata").base == "json" else "jsonb_typeof"
        return f"({a}.metadata IS NOT NULL AND coalesce({typeof}({document}), '') <> 'object')"

    def written_by_bot(self, a: str) -> str:
        """A row tokens-bot wrote on approval (core.domain.approvals.approval_trail records both keys): never an initial grant."""
        return f"coalesce({self.meta(a, 'source')} = 'slack' AND {self.meta(a, 'request_id')} IS NOT NULL, false)"

    def is_reversal(self, a: str) -> str:
        """A row tokens-bot wrote to reverse a duplicate (core.domain.fix_plans): negative on purpose."""
        return f"coalesce({self.meta(a, 'reverses')} IS NOT NULL AND {self.written_by_bot(a)}, false)"

    def text_of(self, a: str, name: str) -> str:
        """An optional text column (model_used, error_message) as text, NULL where the product has none."""
        return f"{a}.{name}::text" if self.ledger.has(name) else "NULL::text"

    def row_id(self, a: str) -> str:
        return f"{a}.id::text"

    def _id_key(self, a: str) -> str:
        column = self.ledger.column("id")
        if column.is_integer or column.is_numeric:
            return f"lpad(({a}.id::numeric + {_ID_SHIFT})::text, 40, '0')"
        return f"{a}.id::text"

    def history_key(self, a: str) -> str:
        """Sorts rows oldest first as text (C collation), ties by id; a NULL time sorts before any other.

        The time is microseconds since the epoch, shifted to be non-negative and zero-padded, so every
        time PostgreSQL holds (BC dates, year 200000, ±infinity) orders as what it is. The check and the
        scans both take a user's first grant as the smallest key of its grant rows, so they always agree
        on which row it is; the tokens follow the key after chr(1).
        """
        created = self.created(a)
        micros = f"lpad(((extract(epoch FROM {created}) + {_EPOCH_SHIFT}) * 1000000)::numeric(30, 0)::text, {TIME_KEY_WIDTH}, '0')"
        time = (
            f"CASE WHEN {created} IS NULL THEN '{'0' * TIME_KEY_WIDTH}'"
            f" WHEN {created} = '-infinity' THEN '{'0' * (TIME_KEY_WIDTH - 1)}1'"
            f" WHEN {created} = 'infinity' THEN '{'9' * TIME_KEY_WIDTH}' ELSE {micros} END"
        )
        tokens = f"coalesce({self.tokens(a)}, 0)::text"
        return f'(({time}) || {self._id_key(a)} || chr(1) || {tokens}) COLLATE "C"'

    @staticmethod
    def tokens_of_key(key: str) -> str:
        """The tokens of the row whose `history_key` is `key` (NULL when there is no such row)."""
        return f"split_part({key}, chr(1), 2)::numeric"


@lru_cache(maxsize=64)
def _columns(
    shape: ProductShape,
    cents: bool,
    grants: tuple[str, ...],
    deducts: tuple[str, ...],
    resets: tuple[str, ...],
) -> Columns:
    """A type listed as a reset is only a reset, and one listed as a grant is not also a deduction."""
    grants = tuple(a for a in grants if a not in resets)
    return Columns(
        shape=shape,
        cost_in_ledger_unit=cents,
        grant_actions=grants,
        deduct_actions=tuple(a for a in deducts if a not in resets + grants),
        reset_actions=resets,
    )
