"""fn_mot_graph_emit and release: roots queued, the rest waiting; a step is released in the
transaction that ends its last parent and reads its parents' results; the health view follows a
workflow to succeeded; plain jobs never reach the workflow triggers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import scalar
from workflow.support import (
    claim,
    claim_step,
    complete,
    emit,
    run_step,
    states,
    status,
    step_job,
)

Conn = psycopg.Connection[Any]
Template = Callable[..., str]


def diamond(template: Template) -> str:
    return template(
        [
            {"key": "a", "payload": {"greeting": "hello", "n": 1}},
            {"key": "b", "parents": ["a"]},
            {"key": "c", "parents": ["a"]},
            {"key": "d", "parents": ["b", "c"]},
        ]
    )


def test_emit_queues_the_roots_and_leaves_the_rest_waiting_with_params_merged(
    sql: Conn, template: Template
) -> None:
    name = diamond(template)

    workflow = emit(sql, name, {"n": 2, "record_id": 7})

    assert states(sql, workflow) == {"a": "queued", "b": "waiting", "c": "waiting", "d": "waiting"}
    payload = scalar(
        sql, "SELECT payload FROM job_queue WHERE id = %s", (step_job(sql, workflow, "a"),)
    )
    assert payload == {"greeting": "hello", "n": 2, "record_id": 7}
    assert status(sql, workflow) == "active"


def test_a_dry_run_answers_the_graph_and_writes_nothing(sql: Conn, template: Template) -> None:
    name = diamond(template)
    before = scalar(
        sql, "SELECT (SELECT count(*) FROM job_queue) + (SELECT count(*) FROM job_workflow)"
    )

    plan = scalar(
        sql, "SELECT fn_mot_graph_emit(%s, params => '{\"x\": 1}', dry_run => true)", (name,)
    )

    assert [(s["key"], s["status"], s["parents"]) for s in plan["steps"]] == [
        ("a", "queued", []),
        ("b", "waiting", ["a"]),
        ("c", "waiting", ["a"]),
        ("d", "waiting", ["b", "c"]),
    ]
    assert plan["steps"][0]["payload"] == {"greeting": "hello", "n": 1, "x": 1}
    after = scalar(
        sql, "SELECT (SELECT count(*) FROM job_queue) + (SELECT count(*) FROM job_workflow)"
    )
    assert after == before


def test_the_same_idempotency_key_emits_once(sql: Conn, template: Template) -> None:
    name = diamond(template)
    first = emit(sql, name, idempotency_key=f"{name}:1")

    again = scalar(sql, "SELECT fn_mot_graph_emit(%s, idempotency_key => %s)", (name, f"{name}:1"))

    assert again == {
        "ok": True,
        "workflow_id": first,
        "already": True,
        "idempotency_key": f"{name}:1",
    }
    assert scalar(sql, "SELECT count(*) FROM job_workflow WHERE template = %s", (name,)) == 1


def test_an_unknown_template_is_refused_and_bad_params_are_an_error(sql: Conn) -> None:
    answer = scalar(sql, "SELECT fn_mot_graph_emit('t.nowhere')")
    assert answer == {
        "refused": True,
        "reason": "not_found",
        "template": "t.nowhere",
        "version": None,
    }
    with pytest.raises(errors.InvalidParameterValue, match="params must be a JSON object"):
        sql.execute("SELECT fn_mot_graph_emit('staging.cut_pipeline', params => '[1]')")


def test_completing_the_last_parent_releases_the_child_in_the_same_transaction(
    sql: Conn, template: Template, queue: str, connect: Callable[..., Conn]
) -> None:
    workflow = emit(sql, diamond(template))
    run_step(sql, queue, workflow, "a")
    run_step(sql, queue, workflow, "b")
    lease = claim_step(sql, queue, workflow, "c")
    other = connect()

    with connect(autocommit=False) as tx:
        complete(tx, lease)
        assert states(tx, workflow)["d"] == "queued"  # inside the completing transaction
        assert states(other, workflow)["d"] == "waiting"  # not committed yet
    assert states(other, workflow)["d"] == "queued"


def test_a_child_reads_its_parents_results(sql: Conn, template: Template, queue: str) -> None:
    workflow = emit(sql, diamond(template))
    run_step(sql, queue, workflow, "a", {"rows": 3})
    run_step(sql, queue, workflow, "b", {"b": True})
    run_step(sql, queue, workflow, "c")

    answer = scalar(sql, "SELECT fn_job_workflow_parents(%s)", (step_job(sql, workflow, "d"),))

    assert answer["step"] == "d" and answer["workflow_id"] == workflow
    assert {k: (v["outcome"], v["result"]) for k, v in answer["parents"].items()} == {
        "b": ("succeeded", {"b": True}),
        "c": ("succeeded", None),
    }
    root = scalar(sql, "SELECT fn_job_workflow_parents(%s)", (step_job(sql, workflow, "a"),))
    assert root["parents"] == {}


def test_the_health_view_follows_a_workflow_from_active_to_succeeded(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, diamond(template))

    def health() -> Any:
        return sql.execute(
            "SELECT status, steps_waiting, steps_queued, steps_succeeded, waiting_on"
            " FROM v_job_workflow_health WHERE workflow_id = %s",
            (workflow,),
        ).fetchone()

    assert health() == ("active", 3, 1, 0, ["a"])
    run_step(sql, queue, workflow, "a")
    assert health() == ("active", 1, 2, 1, ["b", "c"])
    run_step(sql, queue, workflow, "b")
    run_step(sql, queue, workflow, "c")
    run_step(sql, queue, workflow, "d")

    assert health() is None
    assert status(sql, workflow) == "succeeded"
    assert scalar(sql, "SELECT steps_open FROM job_workflow WHERE id = %s", (workflow,)) == 0


def test_a_batch_completion_releases_children_too(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow = emit(sql, diamond(template))
    run_step(sql, queue, workflow, "a")
    leases = claim(sql, queue)

    sql.execute(
        "SELECT fn_job_complete_many(%s, %s)",
        ([lease.job_id for lease in leases], [lease.token for lease in leases]),
    )

    assert states(sql, workflow)["d"] == "queued"


def test_completing_a_plain_job_never_reaches_the_workflow_functions(
    db: Conn, workflow_dsn: str
) -> None:
    db.execute("SET LOCAL track_functions = 'pl'")
    job_id = scalar(db, "SELECT fn_job_enqueue('demo.plain', '{}', queue => 'plain')")["job_id"]
    job = scalar(db, "SELECT fn_job_claim('tests', queues => ARRAY['plain'])")["jobs"][0]
    scalar(db, "SELECT fn_job_complete(%s, %s)", (job_id, job["lease_token"]))
    scalar(db, "SELECT fn_job_enqueue('demo.plain', '{}', queue => 'plain')")
    failed = scalar(db, "SELECT fn_job_claim('tests', queues => ARRAY['plain'])")["jobs"][0]
    scalar(db, "SELECT fn_job_fail_permanent(%s, %s)", (failed["job_id"], failed["lease_token"]))

    called = db.execute(
        "SELECT funcname FROM pg_stat_xact_user_functions"
        " WHERE funcname LIKE 'fn\\_job\\_workflow%%'"
    ).fetchall()

    assert called == []
    assert (
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_xact_user_functions WHERE funcname = 'fn_job_complete'",
        )
        == 1
    )


def test_emit_refuses_while_workflows_are_switched_off(db: Conn) -> None:
    db.execute("UPDATE dot_config SET value = 'false' WHERE key = 'workflow.mot.enabled'")

    answer = scalar(db, "SELECT fn_mot_graph_emit('staging.cut_pipeline')")

    assert answer == {"refused": True, "reason": "mot_disabled", "flag": "workflow.mot.enabled"}
    assert scalar(db, "SELECT count(*) FROM job_workflow WHERE created_at = now()") == 0


def test_emit_checks_the_payload_limits_with_params_applied(sql: Conn, template: Template) -> None:
    name = template([{"key": "big"}])

    with pytest.raises(errors.InvalidParameterValue, match="step big: with params applied"):
        sql.execute(
            "SELECT fn_mot_graph_emit(%s, params => %s)", (name, Jsonb({"blob": "x" * 300_000}))
        )
