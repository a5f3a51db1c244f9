"""Phase 5 as a migration: it applies on 0–4, its gate passes, it rolls back to the exact catalog
of phases 0–4, and it applies again; rollback refuses to strand live pilot jobs or drop rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.errors import PhaseError
from conveyor.phases import fingerprint, runner


@pytest.fixture
def conn(empty_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(empty_dsn, autocommit=True) as connection:
        for number in (0, 1, 2, 3, 4):
            runner.ratify(connection, number, "tests")
            runner.apply(connection, number, "tests")
        yield connection


def apply_5(conn: psycopg.Connection[Any]) -> runner.ApplyResult:
    runner.ratify(conn, 5, "tests")
    return runner.apply(conn, 5, "tests")


def test_phase_5_applies_passes_its_gate_rolls_back_exactly_and_applies_again(
    conn: psycopg.Connection[Any],
) -> None:
    before = fingerprint.catalog_fingerprint(conn)

    result = apply_5(conn)
    assert result.gate is not None
    assert result.gate.failures == []
    runner.rollback(conn, 5, "tests")
    assert fingerprint.catalog_fingerprint(conn) == before

    again = apply_5(conn)
    assert again.gate is not None
    assert again.gate.passed


def test_the_gate_leaves_no_trace(conn: psycopg.Connection[Any]) -> None:
    apply_5(conn)
    counts = (
        "SELECT (SELECT count(*) FROM iu_core.iu_staging_record),"
        " (SELECT count(*) FROM conveyor.job_queue), (SELECT count(*) FROM conveyor.event_outbox)"
    )
    before = conn.execute(counts).fetchone()
    assert runner.verify(conn, 5, "tests").passed
    assert conn.execute(counts).fetchone() == before


def test_rollback_refuses_while_a_pilot_job_is_live_and_changes_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    apply_5(conn)
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    conn.execute("SELECT conveyor.fn_job_enqueue(kind => 'staging.cut', payload => '{}')")

    with pytest.raises(PhaseError, match="pilot step jobs are still waiting"):
        runner.rollback(conn, 5, "tests")

    assert conn.execute("SELECT to_regclass('conveyor.pilot_cut_target')").fetchone() != (None,)


def test_rollback_refuses_to_drop_staged_payloads_without_an_archive(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    apply_5(conn)
    conn.execute(
        "SELECT conveyor.fn_pilot_mark(collection => 'pilot', record_key => 'k1',"
        " payload => 'hello', actor => 'tests')"
    )

    with pytest.raises(PhaseError, match="pilot_staged_payload"):
        runner.rollback(conn, 5, "tests")
    runner.rollback(conn, 5, "tests", archive=tmp_path / "phase5.sql")

    assert (tmp_path / "phase5.sql").read_text().count("hello") == 1
    apply_5(conn)
    runner.restore(conn, tmp_path / "phase5.sql")
    assert conn.execute("SELECT payload FROM conveyor.pilot_staged_payload").fetchall() == [
        ("hello",)
    ]
