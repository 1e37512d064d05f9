"""Fleet scans on a crafted fleet in a database of their own: contents, order, paging, snapshots, replicas."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from core.domain.models import FindingKind
from core.domain.reports import DiscrepancyRow
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.databases import scratch_database
from tests.support.fleet_data import craft_approved_grants, craft_fleet, days_ago
from tests.support.ledger import add_usage, add_user


@pytest.fixture(scope="module")
def fleet_url(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, "tokens_fleet") as url:
        yield url


@pytest.fixture(scope="module")
def fleet_engine(fleet_url: str) -> Iterator[Engine]:
    engine = make_engine(fleet_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def users(fleet_engine: Engine) -> dict[str, uuid.UUID]:
    with fleet_engine.begin() as conn:
        return {**craft_fleet(conn), **craft_approved_grants(conn)}


def fleet_settings(url: str, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        tokens_admins=["UADMIN1"],
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def service(fleet_url: str, fleet_engine: Engine, users: dict[str, uuid.UUID]) -> TokensService:
    return TokensService(fleet_settings(fleet_url, tokens_page_size=25), fleet_engine)


def all_discrepancies(service: TokensService, minimum: int) -> list[DiscrepancyRow]:
    rows: list[DiscrepancyRow] = []
    page = 1
    while True:
        report = service.discrepancies("UADMIN1", minimum, page=page)
        rows += report.rows
        if not report.page.has_next:
            assert len(rows) == report.total
            return rows
        page += 1


def names(users: dict[str, uuid.UUID], ids: list[uuid.UUID]) -> list[str]:
    by_id = {v: k for k, v in users.items()}
    return [by_id[i] for i in ids]


def test_scan_equals_the_per_user_check_for_every_user(
    service: TokensService, users: dict[str, uuid.UUID]
) -> None:
    """The fleet scan's arithmetic and causes are the check's: same discrepancies and findings for everyone."""
    scanned = {row.user.user_id: row for row in all_discrepancies(service, 0)}
    for name, user_id in users.items():
        check = service.check("UADMIN1", user_id)
        b = check.balance
        if max(abs(b.used_discrepancy), abs(b.remaining_discrepancy)) == 0:
            assert user_id not in scanned, name
            continue
        row = scanned[user_id]
        assert row.balance == b, name
        assert row.findings == check.findings, name


def test_discrepancies_list_largest_first_with_causes(
    service: TokensService, users: dict[str, uuid.UUID]
) -> None:
    """Above the default 100 tokens: largest first, each with its likely cause; 50 tokens of drift is left out."""
    report = service.discrepancies("UADMIN1")
    assert (report.minimum, report.total, report.deferred) == (100, 4, 0)
    assert names(users, [r.user.user_id for r in report.rows]) == [
        "unlogged",
        "before_tracking",
        "failed",
        "deducted",
    ]
    causes = {r.user.email: [f.kind for f in r.findings] for r in report.rows}
    assert causes["unlogged@fleet.example"] == [FindingKind.UNLOGGED_GRANT]
    assert causes["before_tracking@fleet.example"] == [FindingKind.USAGE_BEFORE_TRACKING]
    assert causes["failed@fleet.example"] == [FindingKind.FAILED_CHARGED]
    assert [r.worst for r in report.rows] == [600_000, 50_000, 2_500, 1_000]
    assert service.discrepancies("UADMIN1", 10_000).total == 2
    assert service.discrepancies("UADMIN1", 0).total == 5


def test_lowbalance_lowest_first_with_burn_forecast(
    service: TokensService, users: dict[str, uuid.UUID]
) -> None:
    """Under 10,000 by default, negative first; burn is last week's successful usage per day."""
    report = service.lowbalance("UADMIN1")
    assert (report.threshold, report.total, report.negative, report.burn_window_days) == (10_000, 3, 1, 7)
    assert names(users, [r.user.user_id for r in report.rows]) == ["negative", "before_tracking", "low"]
    low = report.rows[2]
    assert (low.remaining, low.used, low.recent_used, low.burn_per_day) == (3_000, 97_000, 7_000, 1_000)
    assert str(low.days_to_zero) == "3.0"
    assert report.rows[0].days_to_zero == 0 and report.rows[1].days_to_zero == 0
    assert service.lowbalance("UADMIN1", 0).total == 1
    assert service.lowbalance("UADMIN1", 200_000).total == 4


def test_top_highest_usage_with_cost(service: TokensService, users: dict[str, uuid.UUID]) -> None:
    """Top n by lifetime usage, out of every profile; asking for more than exist lists them all."""
    report = service.top("UADMIN1", 3)
    assert report.users == len(users)
    assert names(users, [r.user.user_id for r in report.rows]) == ["heavy", "negative", "low"]
    assert str(report.rows[0].cost) == "90.00"
    assert len(service.top("UADMIN1", 100).rows) == len(users)


def test_paging_walks_every_row_once_and_clamps(
    fleet_url: str, fleet_engine: Engine, users: dict[str, uuid.UUID]
) -> None:
    """Two rows a page: pages cover the list exactly once, and a page past the end shows the last page."""
    service = TokensService(fleet_settings(fleet_url, tokens_page_size=2), fleet_engine)
    first, second = (service.discrepancies("UADMIN1", page=p) for p in (1, 2))
    assert (first.page.number, first.page.count, second.page.number) == (1, 2, 2)
    assert len({r.user.user_id for r in first.rows + second.rows}) == 4
    assert service.discrepancies("UADMIN1", page=99).page.number == 2
    top = [service.top("UADMIN1", 5, page=p) for p in (1, 2, 3)]
    assert [len(t.rows) for t in top] == [2, 2, 1] and top[2].offset == 4
    low = service.lowbalance("UADMIN1", page=2)
    assert names(users, [r.user.user_id for r in low.rows]) == ["low"] and low.offset == 2


def test_viewers_only(service: TokensService) -> None:
    """Fleet lists are personal data too: a stranger is refused."""
    from core.domain.errors import NotAllowedError

    for call in (
        lambda: service.lowbalance("USTRANGER"),
        lambda: service.discrepancies("USTRANGER"),
        lambda: service.top("USTRANGER", 5),
    ):
        with pytest.raises(NotAllowedError):
            call()


def test_no_phantoms_while_another_connection_writes(
    fleet_url: str, fleet_engine: Engine, users: dict[str, uuid.UUID]
) -> None:
    """Usage written (ledger row and balance in one transaction) during scans never shows as a discrepancy."""
    service = TokensService(fleet_settings(fleet_url, tokens_scan_grace_seconds=0), fleet_engine)
    with fleet_engine.begin() as conn:
        busy = add_user(conn, remaining=1_000_000, used=0, email="busy@fleet.example")
        add_usage(conn, busy, tokens=1_000_000, action="admin_grant", model=None)
    stop = threading.Event()
    writes = 0

    def write() -> None:
        nonlocal writes
        while not stop.is_set():
            with fleet_engine.begin() as conn:
                add_usage(conn, busy, tokens=10, at=days_ago(0))
                conn.execute(
                    text(
                        "UPDATE user_profiles SET vibe_assistant_tokens_used = vibe_assistant_tokens_used + 10,"
                        " vibe_assistant_tokens_remaining = vibe_assistant_tokens_remaining - 10 WHERE user_id = :u"
                    ),
                    {"u": busy},
                )
            writes += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(15):
            report = service.discrepancies("UADMIN1")
            assert report.total == 4 and busy not in {r.user.user_id for r in report.rows}
    finally:
        stop.set()
        writer.join()
    assert writes > 15


def test_grace_window_defers_users_mid_write(fleet_url: str, server_url: str) -> None:
    """A ledger row newer than the grace window whose balance is not written yet is deferred, not reported."""
    with scratch_database(server_url, "tokens_grace") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            user = add_user(conn, remaining=10_000, used=0)
            add_usage(conn, user, tokens=10_000, action="admin_grant", model=None)
            add_usage(conn, user, tokens=500, at=days_ago(0))
        report = TokensService(fleet_settings(url), engine).discrepancies("UADMIN1")
        assert (report.total, report.deferred, report.rows) == (0, 1, [])
        strict = TokensService(fleet_settings(url, tokens_scan_grace_seconds=0), engine).discrepancies(
            "UADMIN1"
        )
        assert (strict.total, strict.deferred) == (1, 0)
        engine.dispose()


def test_read_replica_serves_scans_and_primary_serves_checks(fleet_url: str, server_url: str) -> None:
    """With DATABASE_READ_URL set, lists come from the replica only; checks still read the primary."""
    with scratch_database(server_url, "tokens_replica") as replica_url:
        replica = make_engine(replica_url, pool_size=1)
        with replica.begin() as conn:
            only_there = add_user(conn, remaining=42, used=7, email="replica-only@fleet.example")
        primary = make_engine(fleet_url, pool_size=1)
        settings = fleet_settings(fleet_url, database_read_url=replica_url)
        service = TokensService(settings, primary, read_engine=replica)
        low = service.lowbalance("UADMIN1")
        assert [r.user.user_id for r in low.rows] == [only_there]
        assert [r.user.user_id for r in service.top("UADMIN1", 20).rows] == [only_there]
        assert service.discrepancies("UADMIN1", 0).total == 1
        with primary.connect() as conn:
            someone = conn.execute(text("SELECT user_id FROM user_profiles LIMIT 1")).scalar_one()
        assert service.check("UADMIN1", someone).user.user_id == str(someone)
        from core.domain.errors import UserNotFoundError

        with pytest.raises(UserNotFoundError):
            service.check("UADMIN1", only_there)
        primary.dispose()
        replica.dispose()


def test_approved_grants_of_a_tier_amount_are_extra_grants_in_the_scan(
    service: TokensService, users: dict[str, uuid.UUID]
) -> None:
    """A grant tokens-bot approved is never taken for the tier grant, so those users are not listed."""
    listed = {row.user.user_id for row in all_discrepancies(service, 0)}
    assert not listed & {users["approved_tier"], users["approved_beside_logged"]}


def test_grace_window_lists_an_older_discrepancy_larger_than_the_recent_tokens(
    fleet_url: str, server_url: str
) -> None:
    """Recent rows excuse only their own tokens: a larger, older drift is listed; one they explain is deferred."""
    with scratch_database(server_url, "tokens_grace") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            mid_write = add_user(conn, remaining=10_000, used=0)
            add_usage(conn, mid_write, tokens=10_000, action="admin_grant", model=None)
            add_usage(conn, mid_write, tokens=500, at=days_ago(0))
            drifted = add_user(conn, remaining=60_000, used=0)
            add_usage(conn, drifted, tokens=10_000, action="admin_grant", model=None)
            add_usage(conn, drifted, tokens=500, at=days_ago(0))
        report = TokensService(fleet_settings(url), engine).discrepancies("UADMIN1")
        assert (report.total, report.deferred) == (1, 1)
        [row] = report.rows
        assert row.user.user_id == drifted and row.balance.remaining_discrepancy == 50_500
        engine.dispose()


def test_the_first_grant_does_not_depend_on_the_ledger_id_type(fleet_url: str, server_url: str) -> None:
    """With integer ledger ids the scan's first admin_grant is the check's: earliest, then lowest id (9 < 10)."""
    with scratch_database(server_url, "tokens_int_ids") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE token_usage DROP COLUMN id"))
            conn.execute(text("ALTER TABLE token_usage ADD COLUMN id bigint PRIMARY KEY"))
            user = add_user(conn, remaining=0, used=0)
            for row_id, tokens in ((10, 600_000), (9, 7_000), (11, 1_000)):
                conn.execute(
                    text(
                        "INSERT INTO token_usage (id, user_id, action_type, tokens_used, created_at)"
                        " VALUES (:id, :u, 'admin_grant', :t, '2026-01-01T00:00:00Z')"
                    ),
                    {"id": row_id, "u": user, "t": tokens},
                )
        service = TokensService(fleet_settings(url), engine)
        [row] = service.discrepancies("UADMIN1", 0).rows
        assert (row.balance.initial_grant.tokens, row.balance.admin_grants) == (7_000, 601_000)
        assert row.balance == service.reconcile("UADMIN1", user).balance
        engine.dispose()


def test_digest_counts_a_user_it_only_deferred_last_time_as_new(fleet_url: str, server_url: str) -> None:
    """A user deferred by one digest (mid-write) and discrepant in the next is new there, not unresolved."""
    with scratch_database(server_url, "tokens_digest") as url:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            user = add_user(conn, remaining=10_000, used=0)
            add_usage(conn, user, tokens=10_000, action="admin_grant", model=None)
            add_usage(conn, user, tokens=5_000, at=days_ago(0))
        first = TokensService(fleet_settings(url, tokens_scan_grace_seconds=3_600), engine).digest(
            "CDIGEST", lambda report: "1.0"
        )
        assert (first.discrepant, first.deferred, first.new) == (0, 1, 0)
        second = TokensService(fleet_settings(url, tokens_scan_grace_seconds=0), engine).digest(
            "CDIGEST", lambda report: "2.0"
        )
        assert (second.discrepant, second.deferred, second.new, second.unresolved) == (1, 0, 1, 0)
        assert [r.user.user_id for r in second.new_rows] == [user] and second.unresolved_rows == []
        engine.dispose()
