"""Phase 6 as a migration: applies, verifies (gate §8.2), rolls back to the catalog it found,
re-applies; its rollback refuses while a workflow still has live steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.errors import PhaseError
from conveyor.phases import fingerprint, runner
from helpers import scalar

Conn = psycopg.Connection[Any]


@pytest.fixture
def phase4_db(empty_dsn: str) -> Any:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for number in (0, 1, 2, 3, 4):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        yield conn


def test_phase_6_applies_verifies_rolls_back_to_the_same_catalog_and_applies_again(
    phase4_db: Conn,
) -> None:
    before = fingerprint.catalog_fingerprint(phase4_db)

    runner.ratify(phase4_db, 6, "tests")
    applied = runner.apply(phase4_db, 6, "tests")
    assert applied.gate is not None and applied.gate.failures == []
    assert runner.verify(phase4_db, 6, "tests").failures == []
    runner.rollback(phase4_db, 6, "tests")
    assert fingerprint.catalog_fingerprint(phase4_db) == before

    runner.ratify(phase4_db, 6, "tests")
    again = runner.apply(phase4_db, 6, "tests")
    assert again.gate is not None and again.gate.failures == []


def test_the_gate_reports_each_item_passing(phase4_db: Conn) -> None:
    runner.ratify(phase4_db, 6, "tests")
    runner.apply(phase4_db, 6, "tests")

    items = {i.item: i.detail for i in runner.verify(phase4_db, 6).items if i.passed}

    assert any("active → succeeded" in item for item in items), items
    assert any("no mot value" in item for item in items), items


def test_rollback_refuses_while_a_workflow_has_live_steps_and_keeps_the_flag(
    phase4_db: Conn,
) -> None:
    runner.ratify(phase4_db, 6, "tests")
    runner.apply(phase4_db, 6, "tests")
    phase4_db.execute(
        "UPDATE conveyor.dot_config SET value = 'true'"
        " WHERE key IN ('workflow.mot.enabled', 'queue.job_substrate.enabled')"
    )
    workflow = scalar(phase4_db, "SELECT conveyor.fn_mot_graph_emit('staging.cut_pipeline')")[
        "workflow_id"
    ]

    with pytest.raises(PhaseError, match=f"workflows still have live steps: {workflow}"):
        runner.rollback(phase4_db, 6, "tests")

    assert scalar(phase4_db, "SELECT conveyor.fn_config_get('workflow.mot.enabled')") is True
    phase4_db.execute("SELECT conveyor.fn_job_workflow_cancel(%s)", (workflow,))
    with pytest.raises(PhaseError, match="archive"):
        runner.rollback(phase4_db, 6, "tests")


def test_rollback_archives_the_workflows_and_restore_brings_them_back_after_reapply(
    phase4_db: Conn, tmp_path: Path
) -> None:
    runner.ratify(phase4_db, 6, "tests")
    runner.apply(phase4_db, 6, "tests")
    phase4_db.execute(
        "UPDATE conveyor.dot_config SET value = 'true'"
        " WHERE key IN ('workflow.mot.enabled', 'queue.job_substrate.enabled')"
    )
    emitted = scalar(phase4_db, "SELECT conveyor.fn_mot_graph_emit('staging.cut_pipeline')")
    phase4_db.execute("SELECT conveyor.fn_job_workflow_cancel(%s)", (emitted["workflow_id"],))
    archive = tmp_path / "phase6.sql"

    result = runner.rollback(phase4_db, 6, "tests", archive=archive)
    runner.ratify(phase4_db, 6, "tests")
    runner.apply(phase4_db, 6, "tests")
    restored = runner.restore(phase4_db, archive)

    assert result.archived == {
        "conveyor.job_workflow": 1,
        "conveyor.job_workflow_step": 6,
        "conveyor.mot_template": 1,
    }
    assert restored["conveyor.job_workflow_step"] == 6
    phase4_db.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'workflow.mot.enabled'"
    )
    status = scalar(
        phase4_db,
        "SELECT status FROM conveyor.job_workflow WHERE id = %s",
        (emitted["workflow_id"],),
    )
    again = scalar(phase4_db, "SELECT conveyor.fn_mot_graph_emit('staging.cut_pipeline')")
    assert status == "cancelled"
    assert again["workflow_id"] > emitted["workflow_id"]


@pytest.mark.parametrize(
    "damage",
    [
        "DROP TRIGGER job_queue_workflow_step_ended_trg ON conveyor.job_queue",
        "DROP FUNCTION conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb)",
        "ALTER TABLE conveyor.executor_kind DROP CONSTRAINT executor_kind_not_mot_check",
        "UPDATE conveyor.job_workflow_step SET pending_parents = 0 WHERE false;"
        " DROP FUNCTION conveyor.fn_job_workflow__satisfy(bigint, text[], boolean) CASCADE",
    ],
)
def test_the_gate_fails_when_phase_6_is_broken(phase4_db: Conn, damage: str) -> None:
    runner.ratify(phase4_db, 6, "tests")
    runner.apply(phase4_db, 6, "tests")
    for statement in damage.split("; "):
        phase4_db.execute(statement.encode())

    failures = runner.verify(phase4_db, 6, "tests").failures

    assert failures, "the gate passed a broken phase 6"
