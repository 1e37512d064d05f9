"""Supabase's two connection styles: the transaction pooler (6543, no prepared statements) and `sslmode` URLs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.ledger import add_usage, add_user
from tests.support.tcp_proxy import TcpProxy

SUPABASE_POOLER_PORT = 6543


def _prepared_after_repeats(engine: Engine, repeats: int = 12) -> int:
    """How many statements the server holds prepared for a session that ran one query `repeats` times.

    psycopg prepares a query server-side from its fifth run on a connection unless prepare_threshold is
    None, and a transaction pooler hands the next transaction a server session that lacks it.
    """
    with engine.connect() as conn:
        for i in range(repeats):
            conn.execute(text("SELECT CAST(:n AS int) + 1"), {"n": i}).scalar()
        return int(conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one())


def _with_query(url: str, **query: str) -> str:
    """`url` with query parameters added, keeping the ones it has (the embedded server's socket `host`)."""
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


@pytest.fixture
def tcp_url(database_url: str) -> Iterator[str]:
    """The test database over TCP, whether the server listens on TCP or (embedded) on a socket only.

    `sslmode` applies to TCP alone: libpq never negotiates TLS on a Unix socket.
    """
    proxy = TcpProxy.for_url(database_url)
    yield proxy.url_through(database_url)
    proxy.stop()


@pytest.fixture
def pooler_port_proxy(database_url: str) -> Iterator[TcpProxy]:
    """The local server reached on port 6543, as Supabase's transaction pooler is."""
    try:
        proxy = TcpProxy.for_url(database_url, listen_port=SUPABASE_POOLER_PORT)
    except OSError:
        pytest.skip("port 6543 is taken on this machine")
    yield proxy
    proxy.stop()


def test_direct_connection_prepares_repeated_statements(database_url: str) -> None:
    """The control: on a direct connection (5432) psycopg does prepare a statement run many times."""
    engine = make_engine(database_url, pool_size=1)
    try:
        assert _prepared_after_repeats(engine) > 0
    finally:
        engine.dispose()


def test_pooler_port_and_prepare_threshold_none_disable_prepared_statements(
    settings: Settings, database_url: str, pooler_port_proxy: TcpProxy
) -> None:
    """An engine for a :6543 URL, or one with `?prepare_threshold=none`, never prepares a statement: not
    for a query run many times, nor for a check, whose statements are otherwise queued with libpq and
    prepared (another client's transaction could land on this server session, or this one on another's)."""
    direct = make_engine(database_url, pool_size=1)
    with direct.begin() as conn:
        user = add_user(conn, remaining=900)
        add_usage(conn, user, tokens=100)
    direct.dispose()
    pooler_url = pooler_port_proxy.url_through(database_url)
    explicit_url = _with_query(database_url, prepare_threshold="none")
    for url in (pooler_url, explicit_url):
        engine = make_engine(url, pool_size=1)
        try:
            assert _prepared_after_repeats(engine) == 0, url
            service = TokensService(settings, engine)
            for _ in range(6):
                assert service.check("UADMIN1", user).balance.current_remaining == 900
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0, (
                    url
                )
                conn.rollback()
        finally:
            engine.dispose()


@pytest.mark.parametrize("sslmode", ["disable", "prefer", "allow"])
def test_sslmode_in_the_url_is_honoured(tcp_url: str, sslmode: str) -> None:
    """A DATABASE_URL carrying `sslmode` connects; the session is encrypted exactly when the server offers it."""
    engine = make_engine(_with_query(tcp_url, sslmode=sslmode), pool_size=1)
    try:
        with engine.connect() as conn:
            server_ssl = conn.execute(text("SHOW ssl")).scalar_one() == "on"
            encrypted = conn.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar_one()
        assert encrypted == (server_ssl and sslmode != "disable")
    finally:
        engine.dispose()


def test_sslmode_require_refuses_a_server_without_tls(tcp_url: str, engine: Engine) -> None:
    """`sslmode=require` (Supabase's direct connection) never falls back to plain text."""
    with engine.connect() as conn:
        if conn.execute(text("SHOW ssl")).scalar_one() == "on":
            pytest.skip("this server offers TLS; the refusal needs one that does not")
    strict = make_engine(_with_query(tcp_url, sslmode="require"), pool_size=1)
    try:
        with pytest.raises(OperationalError, match="SSL"), strict.connect():
            pass
    finally:
        strict.dispose()
