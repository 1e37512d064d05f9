"""Runtime settings read from the environment, under the names DESIGN.md fixes."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CommaList = Annotated[list[str], NoDecode]


class ModelPrice(BaseModel):
    """Price of one model in cents per 1,000 tokens; what the product charges today."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class EmailSource(BaseModel):
    """Where users' emails live: `schema.table.column`, joined on `id_column = user_id`."""

    # Frozen, so hashable: queries built from a ProductShape holding it are cached per shape.
    model_config = ConfigDict(frozen=True)

    schema_name: str
    table: str
    column: str
    id_column: str = "id"

    @classmethod
    def parse(cls, text: str, id_column: str) -> EmailSource:
        parts = text.split(".")
        if len(parts) != 3 or not all(_IDENTIFIER.match(p) for p in [*parts, id_column]):
            raise ValueError(
                f"email source {text!r} must look like schema.table.column, e.g. auth.users.email"
            )
        return cls(schema_name=parts[0], table=parts[1], column=parts[2], id_column=id_column)


class TierTable(BaseModel):
    """A table of membership tiers that `TOKENS_TIER_COLUMN` points into, with each tier's token amount.

    A tier's initial grant is the first of `amounts` that is set and not zero (an annual tier has its
    amount in one column, a 28-day tier in another).
    """

    model_config = ConfigDict(frozen=True)

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
    key: str = Field(default="id", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    name: str = Field(default="name", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    amounts: tuple[str, ...] = Field(min_length=1)

    @field_validator("amounts")
    @classmethod
    def _identifiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a plain SQL identifier")
        return value

    @property
    def qualified(self) -> str:
        schema, table = self.table.split(".")
        return f'"{schema}"."{table}"'


def to_sqlalchemy_url(url: str) -> str:
    """Map plain `postgresql://` (what Supabase and most tools print) onto the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Everything the bot reads from its environment; field names are the environment names."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    database_url: str | None = None
    # A read replica for the fleet scans; per-user checks and every write stay on DATABASE_URL.
    database_read_url: str | None = None
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    port: int = 3000
    # HTTP mode under gunicorn: worker processes, and threads per worker (see docs-deploy.md for sizing).
    web_concurrency: int = Field(default=2, ge=1, le=64)
    gunicorn_threads: int = Field(default=4, ge=1, le=256)

    tokens_admins: CommaList = []
    tokens_approvers: CommaList = []
    tokens_viewers: CommaList = []
    tokens_approvals_channel: str | None = None

    # How the ledger's action types are read (matched exactly): grants add to the balance, deductions take
    # from it outside usage; every other type is usage.
    tokens_grant_actions: CommaList = ["admin_grant"]
    tokens_deduct_actions: CommaList = ["admin_deduct"]
    # Action types whose row *sets* the balance to its tokens (an annual grant that replaces what was left):
    # the expected balance counts from the latest such row. Used and cost stay lifetime totals.
    tokens_reset_actions: CommaList = []
    # The unit of user_profiles.vibe_assistant_total_cost: dollars (the guide: ledger cents / 100) or the
    # ledger's own cost unit (`cents`: compared with the sum of cost_estimate as it is).
    tokens_cost_unit: Literal["dollars", "cents"] = "dollars"
    # model_used on the ledger rows tokens-bot writes (products often make the column NOT NULL).
    tokens_ledger_model: str = Field(default="admin", min_length=1, max_length=100)

    tokens_data_dir: Path = Path(".tokens-bot")
    tokens_schema: str = "tokens_bot"
    tokens_email_source: str = "auth.users.email"
    tokens_email_id_column: str = "id"
    tokens_tier_column: str = "membership_tier"
    tokens_tier_grants: dict[str, int] = {"annual": 5_000_000, "monthly": 600_000}
    # Where the tier column is a key into a tier table (JSON, see TierTable); unset: the column holds
    # the tier's name, looked up in TOKENS_TIER_GRANTS.
    tokens_tier_table: TierTable | None = None
    tokens_model_prices: dict[str, ModelPrice] = {
        "gpt-4": ModelPrice(input=Decimal("3"), output=Decimal("6")),
        "gpt-4o": ModelPrice(input=Decimal("0.25"), output=Decimal("1")),
        "gpt-5-mini": ModelPrice(input=Decimal("0.025"), output=Decimal("0.2")),
        "dall-e-3": ModelPrice(input=Decimal("0"), output=Decimal("4")),
        "tts-1": ModelPrice(input=Decimal("1.5"), output=Decimal("0")),
        "whisper-1": ModelPrice(input=Decimal("0.6"), output=Decimal("0")),
    }
    tokens_cost_drift_tolerance: Decimal = Field(default=Decimal("0.05"), ge=0)
    tokens_problem_threshold: int = Field(default=1_000, ge=0)
    tokens_scan_threshold: int = Field(default=100, ge=0)
    tokens_duplicate_window_seconds: int = Field(default=5, ge=0)
    tokens_recent_operations: int = Field(default=50, ge=1, le=200)
    tokens_page_size: int = Field(default=10, ge=1, le=25)
    tokens_lowbalance_threshold: int = Field(default=10_000, ge=0)
    # Burn rate = successful usage over this many days, per day; days-to-zero divides by it.
    tokens_burn_window_days: int = Field(default=7, ge=1, le=365)
    # Users with a ledger row this recent may be mid-write (row and balance not both committed yet):
    # the discrepancy scan defers them instead of reporting a phantom discrepancy.
    tokens_scan_grace_seconds: int = Field(default=60, ge=0)
    # Folds of the ledger's per-user totals (`tokens-bot rollup`) stop this far behind the clock (at least
    # the grace above), for rows stamped by an application's clock; see README "Ledger totals".
    tokens_rollup_lag_seconds: int = Field(default=300, ge=0)
    # A fold recounts the rows of this many past hours and re-reads the users of an hour that gained
    # rows since it was folded (rows inserted late); older late rows wait for `tokens-bot rollup --full`.
    tokens_rollup_relook_hours: int = Field(default=24, ge=0, le=24 * 366)
    # ...at most this often (0: every fold). That count reads every row of those hours, at volume most of
    # a fold's cost; late rows are then caught within this many minutes. See README "Ledger totals".
    tokens_rollup_relook_every_minutes: int = Field(default=60, ge=0, le=24 * 60)
    tokens_max_adjustment: int = Field(default=10_000_000, ge=1)
    tokens_request_ttl_hours: int = Field(default=24, ge=1)
    # Distinct approvers a request needs, by its size in tokens: each key is the smallest |delta| its
    # value applies from, e.g. {"0": 1, "1000000": 2}. A batch fix needs the largest value.
    tokens_quorum: dict[int, int] = {0: 1}
    # `tokens-bot tick` reminds approvers in a pending request's thread once it has waited this long,
    # and again at most once per this interval; 0 turns reminders off.
    tokens_remind_after_hours: int = Field(default=4, ge=0, le=24 * 366)
    # `tokens-bot tick` alerts this channel once per crossing: a balance under one of the thresholds (0 is a
    # negative balance, always alerted), and a new discrepancy above TOKENS_PROBLEM_THRESHOLD. Unset: no alerts.
    tokens_alerts_channel: str | None = None
    tokens_alert_thresholds: list[int] = [10_000, 0]
    # The discrepancy alerts scan the whole ledger: at most once per this many minutes.
    tokens_alert_scan_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # `tokens-bot serve` runs the tick itself every this many seconds (one replica at a time); 0: it does not.
    tokens_tick_interval_seconds: int = Field(default=0, ge=0, le=24 * 3600)
    tokens_slack_retries: int = Field(default=5, ge=0, le=10)
    tokens_slack_retry_seconds: float = Field(default=0.5, gt=0, le=30)
    # Per-transaction sort memory for the bot's reads: a heavy user's duplicate scan sorts ~20k rows,
    # which spills to disk under PostgreSQL's 4MB default.
    tokens_work_mem: str = Field(default="32MB", pattern=r"^[0-9]+(kB|MB|GB)$")
    # Connections per engine (and as many again as overflow); one per thread doing database work.
    tokens_db_pool_size: int = Field(default=4, ge=1, le=100)
    # Every transaction of the bot runs with SET LOCAL statement_timeout: a slow query ends in a
    # friendly reply instead of a request that hangs.
    tokens_statement_timeout_ms: int = Field(default=15_000, ge=100)
    # Slash commands per Slack user per minute, per process; past it the user is asked to slow down.
    tokens_rate_limit_per_minute: int = Field(default=30, ge=1)
    # How long one Slack Web API or response_url call may take before it counts as failed (and is retried).
    tokens_slack_timeout_seconds: int = Field(default=5, ge=1, le=60)
    # Threads per process that compute and send replies; listeners ack in the request's own thread, so
    # acks never wait for these. Keep TOKENS_DB_POOL_SIZE at least as large: a reply thread beyond the
    # pool gets an overflow connection, opened and closed again per reply.
    tokens_reply_threads: int = Field(default=4, ge=1, le=256)

    @field_validator("tokens_admins", "tokens_approvers", "tokens_viewers", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tokens_grant_actions", "tokens_deduct_actions", "tokens_reset_actions", mode="before")
    @classmethod
    def _action_types(cls, value: Any) -> Any:
        """Action types are matched exactly as stored: a comma list (spaces around commas dropped), or a
        JSON list for a spelling with spaces or commas in it, such as `[" Admin_Grant"]`."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return [str(part) for part in json.loads(value) if str(part).strip()]
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tokens_schema", "tokens_tier_column", "tokens_email_id_column")
    @classmethod
    def _must_be_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a plain SQL identifier")
        return value

    @field_validator("tokens_email_source")
    @classmethod
    def _email_source_shape(cls, value: str) -> str:
        EmailSource.parse(value, "id")
        return value

    @property
    def email_source(self) -> EmailSource:
        return EmailSource.parse(self.tokens_email_source, self.tokens_email_id_column)

    @field_validator("tokens_quorum")
    @classmethod
    def _quorum_shape(cls, value: dict[int, int]) -> dict[int, int]:
        if not value:
            raise ValueError('needs at least one size, e.g. {"0": 1}')
        if any(size < 0 for size in value) or any(needed < 1 for needed in value.values()):
            raise ValueError("sizes must be 0 or more tokens and each needs at least 1 approver")
        return value

    def quorum_for(self, tokens: int) -> int:
        """Approvers a change of `tokens` (either way) needs: the value of the largest size it reaches."""
        reached = [size for size in self.tokens_quorum if size <= abs(tokens)]
        return self.tokens_quorum[max(reached)] if reached else 1

    @property
    def batch_quorum(self) -> int:
        return max(self.tokens_quorum.values())

    @property
    def approvers(self) -> list[str]:
        """Approvers default to the admins, as DESIGN.md says."""
        return self.tokens_approvers or self.tokens_admins

    @property
    def alert_thresholds(self) -> list[int]:
        """The balances whose crossing alerts, highest first; 0 (a negative balance) always among them."""
        return sorted({*self.tokens_alert_thresholds, 0}, reverse=True)

    def may_ask(self, slack_user_id: str) -> bool:
        """Only admins ask for grants, deductions and corrections."""
        return slack_user_id in self.tokens_admins

    def may_view(self, slack_user_id: str) -> bool:
        """Balances are personal data: only admins, approvers and viewers see them."""
        return slack_user_id in {*self.tokens_admins, *self.approvers, *self.tokens_viewers}
