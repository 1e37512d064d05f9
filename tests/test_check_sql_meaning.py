"""What the check's reworked SQL still means: the balance pass summed per action type, and the finding
signals with their partition keys reordered, give the figures a row-by-row reading gives."""

from __future__ import annotations

from sqlalchemy import Engine, text

from core.domain.models import DataQualityKind
from core.services.service import TokensService
from core.settings import Settings
from core.store.columns import Columns
from core.store.db import unit_of_work
from core.store.signals import read_duplicate_rows, read_fleet_signals, read_ledger_signals
from tests.support.ledger import add_usage, add_user


def test_type_tests_run_per_type_and_still_count_every_row_as_it_stands(
    settings: Settings, engine: Engine
) -> None:
    """Near misses (failed ones too), blank types and NULL costs are counted with their tokens; a near miss
    counts as usage, a failed grant as nothing, and the first successful grant is the initial grant."""
    with engine.begin() as conn:
        user = add_user(conn)
        add_usage(conn, user, tokens=600_000, action="admin_grant", model=None, seconds=0)
        add_usage(conn, user, tokens=5_000, action="admin_grant", model=None, success=False, seconds=1)
        add_usage(conn, user, tokens=10_000, action="admin_grant", model=None, seconds=2)
        add_usage(conn, user, tokens=300, action="admin_deduct", model=None, seconds=3)
        add_usage(conn, user, tokens=1_000, action=" Admin_Grant", seconds=4)
        add_usage(conn, user, tokens=7, action=" Admin_Grant", success=False, seconds=5)
        add_usage(conn, user, tokens=200, action="ADMIN_DEDUCT", seconds=6)
        add_usage(conn, user, tokens=700, action="chat", seconds=7)
        add_usage(conn, user, tokens=900, action="chat", success=False, seconds=8)
        add_usage(conn, user, tokens=50, action="", seconds=9)
        add_usage(conn, user, tokens=60, action="   ", success=False, seconds=10)
        no_cost = add_usage(conn, user, tokens=400, action="image", seconds=11)
        failed_no_cost = add_usage(conn, user, tokens=80, action="image", success=False, seconds=12)
        conn.execute(
            text(
                "UPDATE token_usage SET cost_estimate = NULL"
                " WHERE user_id = :u AND (id IN (:a, :b) OR action_type = 'admin_grant')"
            ),
            {"u": user, "a": no_cost, "b": failed_no_cost},
        )
    report = TokensService(settings, engine).check("UADMIN1", user)
    b = report.balance
    assert (b.ledger_rows, b.failed_rows) == (13, 5)
    assert b.calculated_used == 1_000 + 200 + 700 + 50 + 400
    assert (b.initial_grant.tokens, b.admin_grants, b.admin_deductions) == (600_000, 10_000, 300)
    notes = {note.kind: (note.rows, note.tokens) for note in report.data_quality}
    assert notes[DataQualityKind.NEAR_MISS_ACTION] == (3, 1_207)
    assert notes[DataQualityKind.NULL_ACTION] == (2, 110)
    assert notes[DataQualityKind.NULL_COST] == (1, 400)


def test_the_check_the_fleet_and_a_reversal_agree_on_duplicates(settings: Settings, engine: Engine) -> None:
    """Twins share tokens, parts, success, type and model within the window; request ids are equal only
    byte for byte. The check's signals, the fleet's and the rows a reversal would undo agree."""
    with engine.begin() as conn:
        user = add_user(conn)
        add_usage(conn, user, tokens=500, input_tokens=100, output_tokens=400, seconds=0)
        add_usage(conn, user, tokens=500, input_tokens=100, output_tokens=400, seconds=3)  # twin
        add_usage(conn, user, tokens=500, input_tokens=100, output_tokens=400, model="gpt-4", seconds=4)
        add_usage(conn, user, tokens=500, input_tokens=100, output_tokens=400, seconds=30)  # too late
        add_usage(conn, user, tokens=10, seconds=100, metadata={"request_id": "Req-1"})
        add_usage(conn, user, tokens=20, seconds=200, metadata={"request_id": "req-1"})
        add_usage(conn, user, tokens=30, seconds=300, metadata={"request_id": "Req-1"})  # repeated id
        add_usage(conn, user, tokens=40, success=False, seconds=400, metadata={"request_id": "Req-1"})
        add_usage(conn, user, tokens=9_000, action="admin_grant", model=None, seconds=500)
        add_usage(conn, user, tokens=9_000, action="admin_grant", model=None, seconds=502)  # twin grant
    service = TokensService(settings, engine)
    with unit_of_work(engine, read_only=True) as conn:
        cols = Columns.of(service.shape(conn), settings)
        signals = read_ledger_signals(conn, cols, settings, user)
        fleet = read_fleet_signals(conn, cols, settings, [user])[user]
        rows = read_duplicate_rows(conn, cols, settings, [user])[user]
    assert (signals["duplicate_rows"], signals["duplicate_tokens"]) == (2, 530)
    assert (signals["duplicate_grant_rows"], signals["duplicate_grant_tokens"]) == (1, 9_000)
    assert {k: int(v) for k, v in fleet.items() if k != "user_id"} == {k: int(v) for k, v in signals.items()}
    assert sorted(row.tokens for row in rows) == [30, 500, 9_000]
