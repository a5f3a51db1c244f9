"""conveyor.workflow and JobContext.parents(): thin wrappers over the SQL, refusals as exceptions;
the tick runs fn_job_workflow_refresh once phase 6 is applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from conveyor import jobs, tick, workflow
from conveyor.errors import ConfigError, Disabled, InvalidInput, Refused
from conveyor.handlers import JobContext
from workflow.support import run_step, step_job

Conn = psycopg.Connection[Any]
Template = Callable[..., str]


def test_emit_plan_steps_get_and_list_read_back_what_the_sql_wrote(
    sql: Conn, template: Template, queue: str
) -> None:
    name = template([{"key": "a"}, {"key": "b", "parents": ["a"]}])

    planned = workflow.plan(sql, name, params={"x": 1})
    emitted = workflow.emit(sql, name, params={"x": 1}, idempotency_key=f"k-{name}")
    again = workflow.emit(sql, name, idempotency_key=f"k-{name}")

    assert [(p.key, p.status, p.parents) for p in planned] == [
        ("a", "queued", ()),
        ("b", "waiting", ("a",)),
    ]
    assert again == workflow.Emitted(emitted.workflow_id, already=True)
    found = workflow.get(sql, emitted.workflow_id)
    assert found is not None and (found.status, found.steps_open) == ("active", 2)
    assert [(s.step_key, s.state) for s in workflow.steps(sql, emitted.workflow_id)] == [
        ("a", "queued"),
        ("b", "waiting"),
    ]
    listed = workflow.list_workflows(sql, status="active", limit=1000)
    assert emitted.workflow_id in {w.workflow_id for w in listed}
    assert workflow.get(sql, -1) is None


def test_register_answers_the_version_and_a_bad_template_raises_invalid_input(sql: Conn) -> None:
    name = f"py.{uuid4().hex[:8]}"
    stored = workflow.register_template(sql, name, [{"key": "a", "kind": "k", "executor": "dot"}])

    assert stored == workflow.TemplateVersion(name, 1, 1, True)
    with pytest.raises(InvalidInput, match="step a: parent zz is not a step"):
        workflow.register_template(
            sql, name, [{"key": "a", "kind": "k", "executor": "dot", "parents": ["zz"]}]
        )


def test_complete_step_cancel_and_parents_wrap_their_functions(
    sql: Conn, template: Template, queue: str
) -> None:
    name = template(
        [
            {"key": "a"},
            {"key": "ok", "executor": "operator", "parents": ["a"]},
            {"key": "z", "parents": ["ok"]},
        ]
    )
    emitted = workflow.emit(sql, name)
    with pytest.raises(Refused, match="not_ready"):
        workflow.complete_step(sql, emitted.workflow_id, "ok")
    run_step(sql, queue, emitted.workflow_id, "a", {"n": 1})

    done = workflow.complete_step(
        sql, emitted.workflow_id, "ok", completed_by="carol", result={"approved": True}
    )
    parents = workflow.parents(sql, step_job(sql, emitted.workflow_id, "z"))
    cancelled = workflow.cancel(sql, emitted.workflow_id, reason="enough", cancelled_by="carol")

    assert done["completed_by"] == "carol"
    assert parents == {
        "ok": workflow.Parent(
            "ok", "succeeded", step_job(sql, emitted.workflow_id, "ok"), {"approved": True}
        )
    }
    assert cancelled["cancelled"] == 1
    with pytest.raises(Refused, match="already_finished"):
        workflow.cancel(sql, emitted.workflow_id)


def test_a_transactional_handler_reads_its_parents_through_its_context(
    sql: Conn, template: Template, queue: str
) -> None:
    workflow_id = workflow.emit(
        sql, template([{"key": "a"}, {"key": "b", "parents": ["a"]}])
    ).workflow_id
    run_step(sql, queue, workflow_id, "a", {"rows": 2})
    (job,) = jobs.claim(sql, "tests", queues=[queue])

    parents = JobContext(job=job, worker="w", conn=sql).parents()
    sql.execute("SELECT fn_job_complete(%s, %s)", (job.job_id, job.lease_token))

    assert {k: p.result for k, p in parents.items()} == {"a": {"rows": 2}}
    with pytest.raises(ConfigError, match="needs a psycopg Connection"):
        JobContext(job=job, worker="w").parents()


def test_the_tick_runs_the_workflow_refresh_once_phase_6_is_applied(sql: Conn) -> None:
    results = {r.step: r for r in tick.run(sql)}

    assert results["workflow_refresh"].status == "ok"


def test_a_switched_off_phase_raises_disabled(db: Conn) -> None:
    db.execute("UPDATE dot_config SET value = 'false' WHERE key = 'workflow.mot.enabled'")

    with pytest.raises(Disabled, match="mot_disabled"):
        workflow.emit(db, "staging.cut_pipeline")
    with pytest.raises(Disabled):
        workflow.refresh(db)
