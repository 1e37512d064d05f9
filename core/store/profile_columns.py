"""How a user's cached balance is read from user_profiles, and which of a user's profile rows is theirs.

A product may keep several rows per user (versions, drafts) or offer user_profiles as a view; the
current row is chosen the same way for every read and write, and named in replies.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain.models import CostUnit
from core.store.product import PROFILE_BALANCES, Column, ProductShape, Table

REMAINING, USED, COST = PROFILE_BALANCES


def whole(expr: str, column: Column) -> str:
    """A token count as a whole number: fractions (numeric or float columns) are rounded per row."""
    if column.is_integer:
        return expr
    return f"round(({expr})::numeric)"


@dataclass(frozen=True)
class ProfileColumns:
    """Profile and user-id expressions for one product shape; core.store.columns.Columns adds the ledger's."""

    shape: ProductShape
    cost_in_ledger_unit: bool = False
    """TOKENS_COST_UNIT=cents: the profile's cost holds the ledger's cost unit, not dollars."""

    @property
    def cost_unit(self) -> CostUnit:
        return "cents" if self.cost_in_ledger_unit else "dollars"

    @property
    def cost_divisor(self) -> int:
        """Ledger cost units per unit of the profile's cost: cents per dollar, or 1 when both are cents."""
        return 1 if self.cost_in_ledger_unit else 100

    @property
    def ledger(self) -> Table:
        return self.shape.ledger

    @property
    def profiles(self) -> Table:
        return self.shape.profiles

    # --- users -------------------------------------------------------------------------------------

    def user_param(self, table: Table, name: str = "u") -> str:
        """A bound user id as the table's user_id type, so the (user_id, …) index serves the lookup."""
        return f"CAST(:{name} AS {table.column('user_id').type})"

    def same_user(self, left: str, left_table: Table, right: str, right_table: Table) -> str:
        """A join on user ids, compared as text where the two tables store them as different types."""
        if left_table.column("user_id").type == right_table.column("user_id").type:
            return f"{left} = {right}"
        return f"{left}::text = {right}::text"

    def ledger_user_is(self, user_text: str, a: str = "t") -> str:
        """Ledger rows of the user whose id (as text) is `user_text`, index-friendly where types allow."""
        ledger, profiles = self.ledger.column("user_id"), self.profiles.column("user_id")
        if ledger.base in ("text", "character varying"):
            return f"{a}.user_id::text = {user_text}"
        if ledger.type == profiles.type:
            return f"{a}.user_id = CAST({user_text} AS {ledger.type})"
        return f"{a}.user_id::text = {user_text}"

    # --- user_profiles -----------------------------------------------------------------------------

    def balance(self, p: str, name: str) -> str:
        """A cached balance column as a number; NULL (or no such column) reads as 0, as the product's
        own code reads it, and `unset` says so."""
        if not self.profiles.has(name):
            return "0"
        column = self.profiles.column(name)
        if name == COST:
            value = f"{p}.{name}" if column.is_numeric else f"{p}.{name}::numeric"
        else:
            value = whole(f"{p}.{name}", column)
        return f"coalesce({value}, 0)"

    def unset(self, p: str, name: str) -> str:
        return f"{p}.{name} IS NULL" if self.profiles.has(name) else "true"

    def profile_balances(self, p: str) -> str:
        """The select list of a profile's cached balance, as core.domain.balance.balance_from_sums reads it."""
        return ",\n               ".join(
            [
                f"{self.balance(p, USED)} AS current_used",
                f"{self.balance(p, COST)} AS current_cost",
                f"{self.balance(p, REMAINING)} AS current_remaining",
                f"{self.unset(p, REMAINING)} AS remaining_unset",
                f"{self.unset(p, USED)} AS used_unset",
                f"{self.unset(p, COST)} AS cost_unset",
                f"{self.tier(p)} AS tier",
            ]
        )

    def tier(self, p: str) -> str:
        """The membership tier as text (enums too); NULL where the product has no tier column."""
        return f'{p}."{self.shape.tier_column}"::text' if self.shape.tier_column else "NULL::text"

    # --- the current row ---------------------------------------------------------------------------

    def current_profiles(self, alias: str = "p") -> str:
        """user_profiles as one current row per user, as a FROM item; `alias.bot_profile_key` names the row.

        The current row is the active, non-draft one where the product versions profiles, else the most
        recently updated; drafts are never current. Where user_id is unique there is nothing to choose.
        A filter on user_id outside is pushed into the DISTINCT ON, so one user's lookup stays indexed.
        """
        key = f"{self._row_key('d')} AS bot_profile_key"
        if self.shape.one_profile_per_user:
            return f"(SELECT d.*, {key} FROM user_profiles d) {alias}"
        has = self.profiles.has
        where = "WHERE NOT coalesce(d.is_draft, false)" if has("is_draft") else ""
        order = ["coalesce(d.is_active, false) DESC"] if has("is_active") else []
        order += ["d.updated_at DESC NULLS LAST"] if has("updated_at") else []
        order += [f"{self._row_key('d')} DESC"]
        return (
            f"(SELECT DISTINCT ON (d.user_id) d.*, {key} FROM user_profiles d {where}"
            f" ORDER BY {', '.join(['d.user_id', *order])}) {alias}"
        )

    def _row_key(self, d: str) -> str:
        """What names one row of user_profiles: its primary key, else its physical row (a table), else the
        user id (a view, where the bot then refuses to write for a user with several rows)."""
        if len(self.profiles.primary_key) == 1:
            return f"{d}.{self.profiles.primary_key[0]}::text"
        if self.profiles.kind != "view":
            return f"{d}.ctid::text"
        return f"{d}.user_id::text"

    def is_profile_row(self, p: str = "p", param: str = "k") -> str:
        """A write's WHERE on user_profiles itself: the row whose `bot_profile_key` is `:param`."""
        if len(self.profiles.primary_key) == 1:
            name = self.profiles.primary_key[0]
            return f"{p}.{name} = CAST(:{param} AS {self.profiles.column(name).type})"
        if self.profiles.kind != "view":
            return f"{p}.ctid = CAST(:{param} AS tid)"
        return f"{p}.user_id::text = :{param}"

    def profile_facts(self, p: str = "p") -> str:
        """What a reply says of the chosen row: its key, whether it is active, its version."""
        has = self.profiles.has
        active = f"{p}.is_active" if has("is_active") else "NULL::boolean"
        version = f"{p}.version_number::text" if has("version_number") else "NULL::text"
        return f"{p}.bot_profile_key AS profile_key, {active} AS profile_active, {version} AS profile_version"
