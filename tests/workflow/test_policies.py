"""Failure policies, DLQ replay resuming a workflow, cancellation, operator steps and the refresh
tick. A workflow always ends: a failed or cancelled step never leaves it hanging in active."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from helpers import scalar
from workflow.support import claim, claim_step, emit, fail, run_step, states, status, step_job

Conn = psycopg.Connection[Any]
Template = Callable[..., str]


def two_branches(template: Template, policy: str) -> str:
    """a (policy) → b → c, and an independent x → y."""
    return template(
        [
            {"key": "a", "on_failure": policy},
            {"key": "b", "parents": ["a"]},
            {"key": "c", "parents": ["b"]},
            {"key": "x"},
            {"key": "y", "parents": ["x"]},
        ]
    )


def test_fail_workflow_fails_it_at_once_and_holds_the_steps_not_started(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "fail_workflow"))

    fail(sql, claim_step(sql, queue, workflow, "a"))

    assert status(sql, workflow) == "failed"
    assert scalar(sql, "SELECT failed_step FROM job_workflow WHERE id = %s", (workflow,)) == "a"
    assert states(sql, workflow) == {
        "a": "failed",
        "b": "waiting",
        "c": "waiting",
        "x": "waiting",  # was queued: held, so nothing more starts
        "y": "waiting",
    }
    assert claim(sql, queue) == []


def test_replaying_the_dead_letter_resumes_a_failed_workflow_where_it_stopped(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "fail_workflow"))
    run_step(sql, queue, workflow, "x")
    failed_job = step_job(sql, workflow, "a")
    fail(sql, claim_step(sql, queue, workflow, "a"))
    dead_letter = scalar(sql, "SELECT id FROM job_dead_letter WHERE job_id = %s", (failed_job,))

    answer = scalar(sql, "SELECT fn_job_dead_letter_replay(dead_letter_id => %s)", (dead_letter,))

    replayed = answer["replayed"][0]["job_id"]
    assert step_job(sql, workflow, "a") == replayed
    assert status(sql, workflow) == "active"
    assert states(sql, workflow) == {
        "a": "queued",
        "b": "waiting",
        "c": "waiting",
        "x": "succeeded",
        "y": "queued",
    }
    for key in ("a", "b", "c", "y"):
        run_step(sql, queue, workflow, key)
    assert status(sql, workflow) == "succeeded"


def test_continue_lets_the_children_run_and_the_workflow_succeeds(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "continue"))

    fail(sql, claim_step(sql, queue, workflow, "a"))

    assert states(sql, workflow)["b"] == "queued"
    parents = scalar(sql, "SELECT fn_job_workflow_parents(%s)", (step_job(sql, workflow, "b"),))
    assert parents["parents"]["a"]["outcome"] == "failed"
    for key in ("b", "c", "x", "y"):
        run_step(sql, queue, workflow, key)
    assert status(sql, workflow) == "succeeded"


def test_skip_dependents_skips_everything_downstream_and_the_rest_goes_on(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "skip_dependents"))

    fail(sql, claim_step(sql, queue, workflow, "a"))

    assert states(sql, workflow) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "x": "queued",
        "y": "waiting",
    }
    assert status(sql, workflow) == "active"
    run_step(sql, queue, workflow, "x")
    run_step(sql, queue, workflow, "y")
    assert status(sql, workflow) == "succeeded"


def test_a_cancelled_step_follows_its_failure_policy(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "fail_workflow"))

    sql.execute("SELECT fn_job_cancel(%s)", (step_job(sql, workflow, "a"),))

    assert states(sql, workflow)["a"] == "cancelled"
    assert status(sql, workflow) == "failed"


def test_a_step_dead_lettered_by_the_reaper_fails_the_workflow(
    sql: Conn, template: Template, queue: str
) -> None:
    name = template([{"key": "a", "max_attempts": 1}, {"key": "b", "parents": ["a"]}])
    workflow = emit(sql, name)
    claim_step(sql, queue, workflow, "a")
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (step_job(sql, workflow, "a"),),
    )

    sql.execute("SELECT fn_job_lease_reaper()")

    assert states(sql, workflow) == {"a": "failed", "b": "waiting"}
    assert status(sql, workflow) == "failed"


def test_cancelling_a_workflow_cancels_what_has_not_run_and_asks_running_steps_to_stop(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, two_branches(template, "fail_workflow"))
    running = claim_step(sql, queue, workflow, "a")

    answer = scalar(sql, "SELECT fn_job_workflow_cancel(%s, reason => 'wrong record')", (workflow,))

    assert answer == {
        "ok": True,
        "workflow_id": workflow,
        "status": "cancelled",
        "cancelled": 4,
        "cancel_requested": 1,
    }
    assert states(sql, workflow) == {
        "a": "in_progress",
        "b": "cancelled",
        "c": "cancelled",
        "x": "cancelled",
        "y": "cancelled",
    }
    extend = scalar(sql, "SELECT fn_job_extend_lease(%s, %s)", (running.job_id, running.token))
    assert extend.get("cancel_requested") is True
    # The running step finishes anyway: recorded, nothing released, the workflow stays cancelled.
    scalar(sql, "SELECT fn_job_complete(%s, %s)", (running.job_id, running.token))
    assert states(sql, workflow)["b"] == "cancelled"
    assert status(sql, workflow) == "cancelled"
    assert scalar(sql, "SELECT steps_open FROM job_workflow WHERE id = %s", (workflow,)) == 0
    again = scalar(sql, "SELECT fn_job_workflow_cancel(%s)", (workflow,))
    assert again["reason"] == "already_finished"


def test_an_operator_step_is_completed_by_a_person_and_records_who_and_when(
    sql: Conn, template: Template, queue: str
) -> None:
    name = template(
        [
            {"key": "prepare"},
            {"key": "approve", "executor": "operator", "parents": ["prepare"], "queue": "operator"},
            {"key": "ship", "parents": ["approve"]},
        ]
    )
    workflow = emit(sql, name)
    early = scalar(sql, "SELECT fn_job_workflow_complete_step(%s, 'approve', 'alice')", (workflow,))
    not_operator = scalar(sql, "SELECT fn_job_workflow_complete_step(%s, 'prepare')", (workflow,))
    run_step(sql, queue, workflow, "prepare")

    answer = scalar(
        sql,
        "SELECT fn_job_workflow_complete_step(%s, 'approve', 'alice', %s)",
        (workflow, Jsonb({"approved": True})),
    )

    assert early["reason"] == "not_ready"
    assert not_operator["reason"] == "not_an_operator_step"
    assert answer["ok"] is True and answer["completed_by"] == "alice"
    who, when = sql.execute(
        "SELECT completed_by, completed_at IS NOT NULL FROM v_job_workflow_step"
        " WHERE workflow_id = %s AND step_key = 'approve'",
        (workflow,),
    ).fetchone() or (None, None)
    assert (who, when) == ("alice", True)
    assert states(sql, workflow)["ship"] == "queued"
    twice = scalar(sql, "SELECT fn_job_workflow_complete_step(%s, 'approve', 'bob')", (workflow,))
    assert twice["reason"] == "already_finished"


def test_refresh_releases_a_step_left_waiting_and_settles_the_workflow(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, template([{"key": "a"}, {"key": "b", "parents": ["a"]}]))
    run_step(sql, queue, workflow, "a")
    sql.execute(
        "UPDATE job_queue SET status = 'waiting' WHERE id = %s", (step_job(sql, workflow, "b"),)
    )

    first = scalar(sql, "SELECT fn_job_workflow_refresh()")
    run_step(sql, queue, workflow, "b")

    assert first["released"] >= 1
    assert status(sql, workflow) == "succeeded"


def test_refresh_asks_a_step_past_its_timeout_to_stop(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, template([{"key": "slow", "timeout_seconds": 30}]))
    lease = claim_step(sql, queue, workflow, "slow")
    sql.execute(
        "UPDATE job_queue SET started_at = now() - interval '31 seconds' WHERE id = %s",
        (lease.job_id,),
    )

    answer = scalar(sql, "SELECT fn_job_workflow_refresh()")
    extend = scalar(sql, "SELECT fn_job_extend_lease(%s, %s)", (lease.job_id, lease.token))
    scalar(sql, "SELECT fn_job_cancel_ack(%s, %s)", (lease.job_id, lease.token))

    assert answer["timed_out"] >= 1
    assert extend.get("cancel_requested") is True
    assert states(sql, workflow) == {"slow": "cancelled"}
    assert status(sql, workflow) == "failed"


def test_a_replayed_continue_step_counts_its_children_once(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(
        sql, template([{"key": "a", "on_failure": "continue"}, {"key": "b", "parents": ["a"]}])
    )
    failed_job = step_job(sql, workflow, "a")
    fail(sql, claim_step(sql, queue, workflow, "a"))
    run_step(sql, queue, workflow, "b")
    assert status(sql, workflow) == "succeeded"
    dead_letter = scalar(sql, "SELECT id FROM job_dead_letter WHERE job_id = %s", (failed_job,))

    sql.execute("SELECT fn_job_dead_letter_replay(dead_letter_id => %s)", (dead_letter,))
    assert status(sql, workflow) == "active"
    run_step(sql, queue, workflow, "a")

    assert states(sql, workflow) == {"a": "succeeded", "b": "succeeded"}
    assert (
        scalar(
            sql,
            "SELECT pending_parents FROM job_workflow_step"
            " WHERE workflow_id = %s AND step_key = 'b'",
            (workflow,),
        )
        == 0
    )
    assert status(sql, workflow) == "succeeded"
