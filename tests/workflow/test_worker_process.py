"""Workflows through real `conveyor worker` processes: handlers read their parents' results, a
worker SIGKILLed mid-step is reaped and the step retried until the workflow completes, and no
step starts after its workflow was cancelled."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from helpers import scalar, wait_until, worker_log
from workflow.support import emit, states, status, step_job

Conn = psycopg.Connection[Any]
Template = Callable[..., str]


def test_a_workflow_runs_through_a_worker_and_each_step_reads_its_parents(
    sql: Conn, template: Template, queue: str, start_worker: Callable[..., Any]
) -> None:
    name = template(
        [
            {"key": "a", "kind": "wf.echo"},
            {"key": "b", "kind": "wf.echo", "parents": ["a"]},
            {"key": "c", "kind": "wf.echo", "parents": ["a"]},
            {"key": "d", "kind": "wf.echo", "parents": ["b", "c"]},
        ]
    )
    workflow = emit(sql, name)
    worker = start_worker("--queue", queue, "--concurrency", "2")

    wait_until(lambda: status(sql, workflow) == "succeeded", timeout=60)

    result = scalar(
        sql, "SELECT result FROM job_queue WHERE id = %s", (step_job(sql, workflow, "d"),)
    )
    assert result["parents"] == {
        "b": {
            "job": step_job(sql, workflow, "b"),
            "parents": {"a": {"job": step_job(sql, workflow, "a"), "parents": {}}},
        },
        "c": {
            "job": step_job(sql, workflow, "c"),
            "parents": {"a": {"job": step_job(sql, workflow, "a"), "parents": {}}},
        },
    }, worker_log(worker)


def test_a_worker_killed_mid_step_is_reaped_the_step_retried_and_the_workflow_completes(
    sql: Conn, template: Template, queue: str, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    marker = tmp_path / "attempts"
    name = template(
        [
            {"key": "a", "kind": "wf.echo"},
            {"key": "b", "kind": "wf.marker", "parents": ["a"], "payload": {"marker": str(marker)}},
            {"key": "c", "kind": "wf.echo", "parents": ["b"]},
        ]
    )
    workflow = emit(sql, name)
    first = start_worker("--queue", queue, "--lease-seconds", "30")
    wait_until(lambda: marker.exists() and marker.read_text().count("\n") == 1, timeout=60)

    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    assert states(sql, workflow) == {"a": "succeeded", "b": "in_progress", "c": "waiting"}
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (step_job(sql, workflow, "b"),),
    )
    reaped = scalar(sql, "SELECT fn_job_lease_reaper()")
    second = start_worker("--queue", queue)

    wait_until(lambda: status(sql, workflow) == "succeeded", timeout=60)
    assert reaped["rescued"] == 1
    assert [line.split()[1] for line in marker.read_text().splitlines()] == ["1", "2"]
    attempts = scalar(
        sql, "SELECT attempts FROM job_queue WHERE id = %s", (step_job(sql, workflow, "b"),)
    )
    assert attempts == 2, worker_log(second)


def test_no_step_starts_after_its_workflow_was_cancelled(
    sql: Conn, template: Template, queue: str, start_worker: Callable[..., Any]
) -> None:
    name = template(
        [
            {"key": "a", "kind": "wf.cooperative"},
            {"key": "b", "kind": "wf.echo", "parents": ["a"]},
            {"key": "x", "kind": "wf.cooperative"},
            {"key": "y", "kind": "wf.echo", "parents": ["x"]},
            {"key": "later", "kind": "wf.echo", "parents": ["b", "y"]},
        ]
    )
    workflow = emit(sql, name)
    worker = start_worker("--queue", queue, "--concurrency", "4", "--lease-seconds", "3")
    wait_until(lambda: list(states(sql, workflow).values()).count("in_progress") == 2, timeout=60)

    answer = scalar(sql, "SELECT fn_job_workflow_cancel(%s)", (workflow,))
    wait_until(lambda: "in_progress" not in states(sql, workflow).values(), timeout=60)
    sql.execute("SELECT fn_job_workflow_refresh()")

    assert answer["cancel_requested"] == 2 and answer["cancelled"] == 3
    assert states(sql, workflow) == {k: "cancelled" for k in ("a", "b", "x", "y", "later")}
    started_after = scalar(
        sql,
        "SELECT count(*) FROM job_workflow_step AS st JOIN job_queue AS jq ON jq.id = st.job_id"
        " JOIN job_workflow AS jw ON jw.id = st.workflow_id"
        " WHERE st.workflow_id = %s AND (jq.started_at >= jw.finished_at"
        "      OR (st.step_key IN ('b', 'y', 'later') AND jq.started_at IS NOT NULL))",
        (workflow,),
    )
    assert started_after == 0, worker_log(worker)
    assert status(sql, workflow) == "cancelled"
