"""What a check asks of PostgreSQL: every read it shows in one round trip, on statements prepared once."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from psycopg.pq import Trace
from sqlalchemy import Engine, text

from core.services.check import judge_user
from core.services.service import TokensService
from core.settings import Settings
from core.store.columns import Columns
from core.store.db import make_engine, unit_of_work
from core.store.ledger import ledger_snapshot, recent_operations, usage_breakdown
from core.store.pipeline import Statement, fetch_all
from core.store.tiers import load_tiers
from tests.support.ledger import add_usage, add_user


def protocol(engine: Engine, run: Callable[[], object]) -> list[tuple[str, str]]:
    """The protocol messages (direction, type) `run` exchanged over the engine's single connection."""
    with engine.connect() as conn:
        pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace"
        with path.open("w") as sink:
            pgconn.trace(sink.fileno())
            pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
            try:
                run()
            finally:
                pgconn.untrace()
        lines = path.read_text().splitlines()
    return [(fields[0], fields[2]) for fields in (line.split("\t") for line in lines) if len(fields) > 2]


def round_trips(messages: list[tuple[str, str]]) -> int:
    """Each time the client waited for the server: the server's ReadyForQuery ends every wait."""
    return sum(1 for direction, kind in messages if (direction, kind) == ("B", "ReadyForQuery"))


def test_a_check_reads_all_it_shows_in_one_round_trip_on_prepared_statements(
    settings: Settings, database_url: str
) -> None:
    """The reads, COMMIT: two round trips (a connection just used is not pinged), the five reads (the ledger
    position a fix proposed from the check must match comes from the breakdown) pipelined in one behind the BEGIN and
    the transaction's and the check's planner settings, on statements psycopg prepared once (a read-only use case commits: a rollback would
    deallocate them) and PostgreSQL planned once (generic plans); the report equals the one the
    statements give run one by one."""
    engine = make_engine(database_url, pool_size=1)
    service = TokensService(settings, engine)
    with engine.begin() as conn:
        user = add_user(conn, remaining=590_000, used=10_400)
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None, seconds=0)
        for i in range(14):
            add_usage(conn, user, tokens=700 + i, cost_cents="1.5", seconds=10 * (i + 1))
        add_usage(conn, user, tokens=300, success=False, error="timeout", seconds=200)
        add_usage(conn, user, tokens=700, seconds=10, metadata={"request_id": "twice"})
        add_usage(conn, user, tokens=700, seconds=11, metadata={"request_id": "twice"})
    try:
        for _ in range(6):  # psycopg prepares a statement on its fifth run on a connection
            service.check("UADMIN1", user)
        reports = []
        messages = protocol(engine, lambda: reports.append(service.check("UADMIN1", user, page=2)))
        assert round_trips(messages) == 2
        # The check's driver-side autocommit ended with it: the next use case on the connection is
        # transactional again.
        with engine.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
        sent = [kind for direction, kind in messages if direction == "F"]
        # The pipeline is all that was sent before its one Sync; COMMIT follows (after psycopg's Flush).
        [sync] = [i for i, kind in enumerate(sent) if kind == "Sync"]
        reads, commit = sent[:sync], [kind for kind in sent[sync + 1 :] if kind != "Flush"]
        # BEGIN, the transaction's settings with the check's planner settings, five reads, and sorting
        # turned back on after the two that group.
        assert "Parse" not in reads and reads.count("Execute") == 8 and commit == ["Query"]
        with engine.connect() as conn:
            plans = conn.execute(
                text(
                    "SELECT custom_plans, generic_plans FROM pg_prepared_statements"
                    " WHERE statement ~ 'FROM token_usage' AND statement !~* '^\\s*INSERT'"
                )
            ).all()
            conn.rollback()
        # Past psycopg's five unprepared runs every read is planned once, generically, never again per check.
        assert len(plans) == 4 and all(custom == 0 and generic >= 2 for custom, generic in plans), plans

        [report] = reports
        with unit_of_work(engine, read_only=True, isolation="REPEATABLE READ") as conn:
            shape = service.shape(conn)
            cols = Columns.of(shape, settings)
            judged = judge_user(conn, cols, settings, load_tiers(conn, shape, settings), user)
            breakdown = usage_breakdown(conn, cols, user)
            page_two = recent_operations(conn, cols, user, offset=10, limit=8)
            snapshot = ledger_snapshot(conn, cols, user)
        assert (report.balance, report.findings, report.verdict) == judged[:1] + judged[2:]
        assert report.breakdown == breakdown and report.operations == page_two
        assert report.snapshot == snapshot
        assert (report.page.number, report.page.count, report.operations_total) == (2, 2, 18)
    finally:
        engine.dispose()


def test_settings_left_for_the_first_statement_hold_for_every_statement_and_end_with_the_transaction(
    database_url: str,
) -> None:
    """Deferred settings ride with the first statement, pipelined or sent through SQLAlchemy, and hold for
    the rest of the transaction; a unit of work that sent nothing leaves none for the next one."""
    engine = make_engine(database_url, pool_size=1, statement_timeout_ms=4321)
    show = text("SELECT current_setting('work_mem') AS w, current_setting('statement_timeout') AS t")
    try:
        with engine.connect() as conn:
            default = conn.execute(show).one()
            conn.rollback()
        for first_pipelined in (True, False):
            with unit_of_work(engine, read_only=True, local={"work_mem": "7MB"}, defer_settings=True) as conn:
                if first_pipelined:
                    [[row]] = fetch_all(conn, [Statement(show, {})])
                    first = (row["w"], row["t"])
                else:
                    first = tuple(conn.execute(show).one())
                assert first == ("7MB", "4321ms") == tuple(conn.execute(show).one())
        with unit_of_work(engine, local={"work_mem": "9MB"}, defer_settings=True):
            pass
        with unit_of_work(engine, read_only=True) as conn:
            assert conn.execute(show).one()[0] == default[0] != "9MB"
    finally:
        engine.dispose()


def user_with_usage(engine: Engine, *, rows: int) -> str:
    """A user with `rows` usage rows of 100, 101, … tokens, a second apart."""
    with engine.begin() as conn:
        user = add_user(conn)
        for i in range(rows):
            add_usage(conn, user, tokens=100 + i, seconds=i)
    return user


def test_a_page_past_the_end_costs_one_more_round_trip_for_the_last_page(
    settings: Settings, database_url: str
) -> None:
    """A stale Next button (the ledger has fewer pages now) shows the last page, read in a third round trip."""
    engine = make_engine(database_url, pool_size=1)
    service = TokensService(settings, engine)
    user = user_with_usage(engine, rows=12)
    try:
        service.check("UADMIN1", user)
        reports = []
        messages = protocol(engine, lambda: reports.append(service.check("UADMIN1", user, page=7)))
        assert round_trips(messages) == 3
        [report] = reports
        assert report.page.number == report.page.count == 2
        assert [op.tokens_used for op in report.operations] == [101, 100]
    finally:
        engine.dispose()


def test_a_first_page_check_is_one_round_trip_its_commit_sent_with_its_reads(
    settings: Settings, database_url: str
) -> None:
    """A first page cannot be past the end, so nothing is read after the reads: the COMMIT goes in their
    pipeline, and the check is one round trip; the connection is back in a transaction-per-use-case state."""
    engine = make_engine(database_url, pool_size=1)
    service = TokensService(settings, engine)
    user = user_with_usage(engine, rows=3)
    try:
        for _ in range(6):
            service.check("UADMIN1", user)
        reports = []
        messages = protocol(engine, lambda: reports.append(service.check("UADMIN1", user)))
        assert round_trips(messages) == 1
        sent = [kind for direction, kind in messages if direction == "F" and kind != "Flush"]
        # BEGIN, the settings, five reads with sorting turned back on after the two that group, and COMMIT,
        # all before the one Sync.
        assert sent[-1] == "Sync" and sent.count("Sync") == 1 and sent.count("Execute") == 9
        [report] = reports
        assert report.operations_total == 3 and report.page.number == 1
        with engine.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
            assert conn.connection.driver_connection.info.transaction_status.name == "IDLE"  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_a_check_prepares_its_statements_again_after_psycopg_deallocated_them_all(
    settings: Settings, database_url: str
) -> None:
    """A rollback on a connection where psycopg prepared statements makes it deallocate every one
    (DEALLOCATE ALL), the check's own included: the next check finds its statements gone, rolls back the
    transaction it opened, prepares them again and answers as before; the one after is one round trip."""
    engine = make_engine(database_url, pool_size=1)
    service = TokensService(settings, engine)
    user = user_with_usage(engine, rows=3)
    count = text("SELECT count(*) FROM token_usage WHERE user_id = CAST(:u AS uuid)")
    try:
        before = service.check("UADMIN1", user)
        with engine.connect() as conn:
            for _ in range(6):  # psycopg prepares a statement on its fifth run on a connection
                conn.execute(count, {"u": user})
            conn.rollback()
            assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0
            conn.rollback()
        assert service.check("UADMIN1", user) == before
        reports = []
        messages = protocol(engine, lambda: reports.append(service.check("UADMIN1", user)))
        assert round_trips(messages) == 1 and reports == [before]
        with engine.connect() as conn:
            ours = conn.execute(
                text("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'tokens\\_%'")
            ).scalar_one()
            conn.rollback()
        assert ours >= 5
    finally:
        engine.dispose()


def test_a_statement_after_reads_that_ended_the_transaction_runs_in_a_new_one_with_the_same_settings(
    database_url: str,
) -> None:
    """The rare path after a check's last reads (why a user has no profile) still runs inside a transaction
    of the unit of work, with its statement timeout and settings, and the unit of work ends it."""
    engine = make_engine(database_url, pool_size=1, statement_timeout_ms=4321)
    show = text(
        "SELECT current_setting('work_mem') AS w, current_setting('statement_timeout') AS t,"
        " current_setting('transaction_read_only') AS r"
    )
    try:
        with unit_of_work(engine, read_only=True, local={"work_mem": "7MB"}, defer_settings=True) as conn:
            [[first]] = fetch_all(conn, [Statement(show, {})], ending=True)
            driver = conn.connection.driver_connection
            assert driver.info.transaction_status.name == "IDLE"  # type: ignore[union-attr]
            after = conn.execute(show).one()
            assert (first["w"], first["t"], first["r"]) == ("7MB", "4321ms", "on")
            assert tuple(after) == ("7MB", "4321ms", "on")
        with engine.connect() as conn:
            assert conn.connection.driver_connection.info.transaction_status.name == "IDLE"  # type: ignore[union-attr]
            assert conn.execute(show).one()[0] != "7MB"
            conn.rollback()
    finally:
        engine.dispose()
