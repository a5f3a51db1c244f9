"""The phase runner's governance, on real PostgreSQL: order, ratification, discipline,
protected objects, archive/restore, concurrency and catalog round trips."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.errors import DisciplineError, PhaseError, PhaseOrderError
from conveyor.phases import catalog, fingerprint, runner
from helpers import scalar

SQL_ROOT = Path(catalog.__file__).parent.parent / "sql"


@pytest.fixture
def conn(empty_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(empty_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def sql_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the SQL files that a test may edit (the runner reads it instead)."""
    root = tmp_path / "sql"
    shutil.copytree(SQL_ROOT, root)
    monkeypatch.setattr(catalog, "_SQL_ROOT", root)
    return root


def apply(conn: psycopg.Connection[Any], number: int) -> runner.ApplyResult:
    runner.ratify(conn, number, "tests")
    return runner.apply(conn, number, "tests")


def test_apply_and_rollback_of_phases_0_and_1_restore_the_catalog_exactly(conn) -> None:
    empty = fingerprint.catalog_fingerprint(conn)
    assert apply(conn, 0).gate.passed  # type: ignore[union-attr]
    after_0 = fingerprint.catalog_fingerprint(conn)
    assert apply(conn, 1).gate.passed  # type: ignore[union-attr]

    runner.rollback(conn, 1, "tests")
    assert fingerprint.catalog_fingerprint(conn) == after_0
    runner.rollback(conn, 0, "tests")
    assert fingerprint.catalog_fingerprint(conn) == empty


def test_phase_0_rolls_back_to_an_empty_catalog_and_applies_again(conn) -> None:
    empty = fingerprint.catalog_fingerprint(conn)
    apply(conn, 0)
    runner.rollback(conn, 0, "tests")
    assert fingerprint.catalog_fingerprint(conn) == empty
    assert apply(conn, 0).gate.passed  # type: ignore[union-attr]


def test_apply_without_ratification_is_refused_and_changes_nothing(conn) -> None:
    before = fingerprint.catalog_fingerprint(conn)
    with pytest.raises(PhaseError, match="not ratified"):
        runner.apply(conn, 0, "tests")
    assert fingerprint.catalog_fingerprint(conn) == before


def test_a_rollback_voids_the_earlier_ratification(conn) -> None:
    apply(conn, 0)
    runner.rollback(conn, 0, "tests")
    with pytest.raises(PhaseError, match="not ratified"):
        runner.apply(conn, 0, "tests")


def test_apply_before_a_dependency_is_refused_naming_the_missing_phase(conn) -> None:
    runner.ratify(conn, 1, "tests")
    with pytest.raises(PhaseOrderError, match=r"phase 1 needs phase 0.*conveyor phase apply 0"):
        runner.apply(conn, 1, "tests")


def test_rollback_of_a_phase_another_applied_phase_depends_on_is_refused(conn) -> None:
    apply(conn, 0)
    apply(conn, 1)
    with pytest.raises(PhaseOrderError, match="rollback 1"):
        runner.rollback(conn, 0, "tests")


def test_a_ddl_file_mixing_in_a_config_write_is_refused_before_anything_runs(
    conn, sql_tree
) -> None:
    apply(conn, 0)
    ddl = sql_tree / "phases" / "1_job_substrate" / "ddl.up.sql"
    ddl.write_text(ddl.read_text() + "\nUPDATE conveyor.dot_config SET value = 'true';\n")
    before = fingerprint.catalog_fingerprint(conn)
    runner.ratify(conn, 1, "tests")
    with pytest.raises(DisciplineError, match=r"ddl.up.sql:\d+: a DML statement \(UPDATE\)"):
        runner.apply(conn, 1, "tests")
    assert fingerprint.catalog_fingerprint(conn) == before
    assert 1 not in runner.applied_phases(conn)


def test_a_phase_that_alters_event_outbox_is_refused_and_rolled_back(conn, sql_tree) -> None:
    apply(conn, 0)
    ddl = sql_tree / "phases" / "1_job_substrate" / "ddl.up.sql"
    ddl.write_text(ddl.read_text() + "\nALTER TABLE conveyor.event_outbox ADD COLUMN sneaky int;\n")
    before = fingerprint.catalog_fingerprint(conn)
    runner.ratify(conn, 1, "tests")
    with pytest.raises(DisciplineError, match="protected platform objects"):
        runner.apply(conn, 1, "tests")
    assert fingerprint.catalog_fingerprint(conn) == before


def test_a_changed_file_of_an_applied_phase_is_reported_not_rerun(conn, sql_tree) -> None:
    apply(conn, 0)
    data = sql_tree / "phases" / "0_platform" / "data.up.sql"
    data.write_text(data.read_text() + "\n-- edited after apply\n")
    status = {s.phase.number: s for s in runner.status(conn)}
    assert status[0].changed_files == ("data.up.sql",)
    with pytest.raises(PhaseError, match="changed since"):
        runner.apply(conn, 0, "tests")


def test_a_later_phase_is_not_applied_on_an_applied_phase_whose_files_changed(
    conn, sql_tree
) -> None:
    apply(conn, 0)
    ddl = sql_tree / "phases" / "0_platform" / "ddl.up.sql"
    ddl.write_text(ddl.read_text() + "\n-- a later build's edit\n")
    runner.ratify(conn, 1, "tests")
    with pytest.raises(PhaseOrderError, match=r"phase 0 was applied from other files.*ddl.up.sql"):
        runner.apply(conn, 1, "tests")
    assert runner.applied_phases(conn) == {0}


def test_plan_runs_the_gate_and_leaves_no_trace(conn) -> None:
    before = fingerprint.catalog_fingerprint(conn)
    result = runner.plan(conn, 0)
    assert result.gate.passed, result.gate.failures
    assert ("table", "conveyor.event_outbox") in result.objects
    assert fingerprint.catalog_fingerprint(conn) == before
    assert runner.applied_phases(conn) == set()


def test_verify_records_each_gate_run(conn) -> None:
    apply(conn, 0)
    result = runner.verify(conn, 0, "tests")
    assert result.passed, result.failures
    assert scalar(conn, "SELECT count(*) FROM conveyor_meta.gate_run WHERE phase = 0") == 2


def test_every_applied_file_has_a_ledger_row_with_its_checksum_and_author(conn) -> None:
    apply(conn, 0)
    rows = conn.execute(
        "SELECT file, length(checksum), applied_by FROM conveyor_meta.ledger ORDER BY id"
    ).fetchall()
    assert rows == [("ddl.up", 64, "tests"), ("data.up", 64, "tests")]


def test_two_applies_at_once_serialize_and_apply_once(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as setup:
        runner.ratify(setup, 0, "tests")
    results: list[Any] = []

    def run() -> None:
        with psycopg.connect(empty_dsn, autocommit=True) as own:
            try:
                results.append(runner.apply(own, 0, "tests"))
            except Exception as error:  # collected and asserted below
                results.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.already_applied for r in results) == [False, True]
    with psycopg.connect(empty_dsn, autocommit=True) as check:
        assert scalar(check, "SELECT count(*) FROM conveyor_meta.ledger WHERE file = 'ddl.up'") == 1


def test_rollback_of_tables_holding_rows_needs_an_archive(conn, tmp_path: Path) -> None:
    apply(conn, 0)
    apply(conn, 1)
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    conn.execute("SELECT conveyor.fn_job_enqueue(kind => 'demo.keep', payload => '{\"n\": 1}')")
    before = fingerprint.catalog_fingerprint(conn)
    with pytest.raises(PhaseError, match=r"conveyor.job_queue \(1 rows\).*--archive"):
        runner.rollback(conn, 1, "tests")
    assert fingerprint.catalog_fingerprint(conn) == before

    archive = tmp_path / "phase1.sql"
    result = runner.rollback(conn, 1, "tests", archive=archive)
    assert result.archived == {"conveyor.job_queue": 1}
    assert 'INSERT INTO "conveyor"."job_queue"' in archive.read_text()

    apply(conn, 1)
    assert runner.restore(conn, archive) == {"conveyor.job_queue": 1}
    assert (
        scalar(conn, "SELECT payload->>'n' FROM conveyor.job_queue WHERE kind = 'demo.keep'") == "1"
    )
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    new_id = scalar(conn, "SELECT conveyor.fn_job_enqueue(kind => 'demo.after')->>'job_id'")
    assert int(new_id) > scalar(conn, "SELECT min(id) FROM conveyor.job_queue")


def test_report_lists_each_phases_tables_with_row_counts(conn) -> None:
    apply(conn, 0)
    apply(conn, 1)
    report = runner.report(conn)
    tables = {o.name: o.rows for o in report[1] if o.kind == "table"}
    assert tables["conveyor.job_queue"] == 0
    assert any(o.kind == "function" and "fn_job_claim" in o.name for o in report[1])
    assert any(o.name == "conveyor.event_outbox" for o in report[0])


def test_unknown_and_unimplemented_phases_are_clear_errors(conn) -> None:
    with pytest.raises(PhaseError, match="there is no phase 9"):
        runner.ratify(conn, 9, "tests")


def test_running_the_down_file_by_hand_refuses_to_drop_rows(conn) -> None:
    from conveyor.phases import sqlfile

    apply(conn, 0)
    apply(conn, 1)
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    conn.execute("SELECT conveyor.fn_job_enqueue(kind => 'demo.keep')")
    down = sqlfile.read(catalog.get(1).file("ddl.down"))
    with (
        pytest.raises(
            psycopg.errors.ObjectInUse, match=r"would drop the rows of conveyor\.job_queue"
        ),
        conn.transaction(),
    ):
        conn.execute(down.text.encode())
    assert scalar(conn, "SELECT count(*) FROM conveyor.job_queue") == 1


def test_phase_0_with_events_rolls_back_with_an_archive_that_psql_restores(
    conn, empty_dsn: str, tmp_path: Path
) -> None:
    apply(conn, 0)
    conn.execute("SELECT conveyor.fn_event_type_register('shop.order_placed')")
    event_id = scalar(conn, "SELECT conveyor.fn_outbox_emit('staging.record_marked', '{\"n\": 7}')")
    archive = tmp_path / "phase0.sql"

    runner.rollback(conn, 0, "tests", archive=archive)
    apply(conn, 0)
    psql = shutil.which("psql") or str(Path(catalog.__file__).parent)  # fails loudly if absent
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(archive), empty_dsn],
        check=True,
        capture_output=True,
    )

    assert (
        scalar(
            conn,
            "SELECT count(*) FROM conveyor.event_type_registry"
            " WHERE event_type = 'shop.order_placed'",
        )
        == 1
    )
    assert (
        scalar(conn, "SELECT payload->>'n' FROM conveyor.event_outbox WHERE id = %s", (event_id,))
        == "7"
    )
    new_id = scalar(conn, "SELECT conveyor.fn_outbox_emit('shop.order_placed')")
    assert new_id > event_id
