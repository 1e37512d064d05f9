"""Pooled connections are pinged at checkout only when they may be gone, and a gone one is replaced."""

from __future__ import annotations

import select
import time

from sqlalchemy import Engine, text

from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from core.store.liveness import CHECKED_IN, QUIET_SECONDS
from tests.support.ledger import add_usage, add_user
from tests.test_check_round_trips import protocol, round_trips


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _fileno(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.connection.driver_connection.fileno())  # type: ignore[union-attr]


def _wait_until_closed_by_server(fileno: int) -> None:
    """pg_terminate_backend only signals the backend: wait until its goodbye reached the pooled socket."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    deadline = time.monotonic() + 10
    while not poller.poll(50) and time.monotonic() < deadline:
        pass


def test_a_connection_the_server_closed_is_replaced_before_a_use_case_gets_it(
    settings: Settings, engine: Engine, database_url: str
) -> None:
    """A terminated backend (as a restart or a pooler leaves it) is noticed at checkout from its socket,
    without waiting for any quiet period: the check runs on a new connection, no error shown."""
    checked = make_engine(database_url, pool_size=1)
    service = TokensService(settings, checked)
    with engine.begin() as conn:
        user = add_user(conn, remaining=42_000, used=100)
        add_usage(conn, user, tokens=100)
    try:
        before, fileno = _backend_pid(checked), _fileno(checked)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": before}).scalar_one()
        _wait_until_closed_by_server(fileno)
        report = service.check("UADMIN1", user)
        assert report.balance.ledger_rows == 1
        assert _backend_pid(checked) != before
    finally:
        checked.dispose()


def test_a_connection_idle_past_the_quiet_period_is_pinged_and_one_just_used_is_not(
    database_url: str,
) -> None:
    """One round trip more (`SELECT 1`) for a connection that sat in the pool longer than QUIET_SECONDS."""
    checked = make_engine(database_url, pool_size=1)
    select_one = text("SELECT 1")

    def run() -> None:
        with checked.connect() as conn:
            conn.execute(select_one)
            conn.commit()

    def run_after_a_quiet_period() -> None:
        record_info[CHECKED_IN] -= QUIET_SECONDS
        run()

    try:
        with checked.connect() as conn:
            record_info = conn.connection.info
        run()
        just_used = round_trips(protocol(checked, run))
        idle = round_trips(protocol(checked, run_after_a_quiet_period))
        # BEGIN, the statement, COMMIT; and the ping before them.
        assert (just_used, idle) == (3, 4)
    finally:
        checked.dispose()
