"""Demo data: the product's tables and a deterministic data set in which every finding occurs."""

from __future__ import annotations

from importlib.resources import files

from sqlalchemy import Connection, text


def create_product_tables(conn: Connection) -> None:
    """Create `token_usage`, `user_profiles` and `auth.users` where absent, as the guide describes them."""
    conn.exec_driver_sql(files("core").joinpath("sql/product_schema.sql").read_text())


def has_product_data(conn: Connection) -> bool:
    """True when the product tables exist and hold any row; demo data must never mix into real data."""
    exists = conn.execute(text("SELECT to_regclass('public.user_profiles') IS NOT NULL")).scalar_one()
    if not exists:
        return False
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM public.user_profiles)")).scalar_one())
