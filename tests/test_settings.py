"""Settings read from the environment under DESIGN.md's names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings, to_sqlalchemy_url


def test_environment_names_lists_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comma-separated Slack IDs become lists, approvers default to admins, postgresql:// maps to psycopg."""
    monkeypatch.setenv("TOKENS_ADMINS", "U1, U2,,U3 ")
    monkeypatch.setenv("TOKENS_VIEWERS", "UV")
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:pw@db.example:5432/app?sslmode=require")
    monkeypatch.setenv("PORT", "8080")
    settings = Settings()
    assert settings.tokens_admins == ["U1", "U2", "U3"]
    assert settings.approvers == ["U1", "U2", "U3"]
    assert settings.may_view("UV") and settings.may_view("U2") and not settings.may_view("U9")
    assert settings.port == 8080
    assert to_sqlalchemy_url(settings.database_url or "") == (
        "postgresql+psycopg://bot:pw@db.example:5432/app?sslmode=require"
    )
    assert to_sqlalchemy_url("postgres://h/db") == "postgresql+psycopg://h/db"


def test_email_source_must_be_a_plain_schema_table_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """The email source becomes SQL identifiers, so anything but schema.table.column is refused at start."""
    monkeypatch.setenv("TOKENS_EMAIL_SOURCE", "auth.users.email; DROP TABLE x")
    with pytest.raises(ValidationError, match=r"schema\.table\.column"):
        Settings()
