"""MOT workflows from Python: register templates, emit, cancel, complete operator steps, read.

Each function sends one SQL constant (``fn_mot_*`` / ``fn_job_workflow_*`` or a ``v_*`` view) on
the caller's connection and parses the answer; release, policies and settlement live in SQL.
``None`` always means "the database default".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from conveyor.calls import acall, call
from conveyor.types import JsonObject

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class TemplateVersion:
    """A stored template version (``created`` False: the latest version already had the steps)."""

    name: str
    version: int
    steps: int
    created: bool

    @classmethod
    def from_answer(cls, answer: JsonObject) -> TemplateVersion:
        return cls(
            str(answer["template"]),
            int(answer["version"]),
            int(answer["steps"]),
            bool(answer["created"]),
        )


@dataclass(frozen=True, slots=True)
class Emitted:
    """The workflow an emit created (or, with a repeated idempotency key, found)."""

    workflow_id: int
    already: bool

    @classmethod
    def from_answer(cls, answer: JsonObject) -> Emitted:
        return cls(int(answer["workflow_id"]), bool(answer.get("already", False)))


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step of a dry run: what emit would create."""

    key: str
    kind: str
    executor: str
    parents: tuple[str, ...]
    status: str
    queue: str
    on_failure: str
    payload: JsonObject

    @classmethod
    def from_answer(cls, item: JsonObject) -> PlannedStep:
        return cls(
            key=str(item["key"]),
            kind=str(item["kind"]),
            executor=str(item["executor"]),
            parents=tuple(str(p) for p in item["parents"]),
            status=str(item["status"]),
            queue=str(item["queue"]),
            on_failure=str(item["on_failure"]),
            payload=dict(item["payload"]),
        )


@dataclass(frozen=True, slots=True)
class Parent:
    """A parent step as its child sees it: how it ended and its job's result."""

    key: str
    outcome: str
    job_id: int
    result: Any

    @classmethod
    def from_answer(cls, key: str, item: JsonObject) -> Parent:
        return cls(key, str(item["outcome"]), int(item["job_id"]), item.get("result"))


@dataclass(frozen=True, slots=True)
class Workflow:
    """A row of v_job_workflow."""

    workflow_id: int
    template: str
    template_version: int
    status: str
    steps_total: int
    steps_open: int
    failed_step: str | None
    cancel_reason: str | None
    cancelled_by: str | None
    created_at: datetime
    created_by: str
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Workflow:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class Step:
    """A row of v_job_workflow_step: a step and its state (no payload or result)."""

    workflow_id: int
    step_key: str
    ord: int
    kind: str
    executor: str
    parents: tuple[str, ...]
    on_failure: str
    job_id: int
    state: str
    attempts: int | None
    pending_parents: int
    started_at: datetime | None
    finished_at: datetime | None
    completed_by: str | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Step:
        return cls(**{**row, "parents": tuple(row["parents"])})


REGISTER_SQL: LiteralString = """
    SELECT conveyor.fn_mot_template_register(name => %s::text, steps => %s::jsonb,
                                             description => %s::text, created_by => %s::text)
"""


def register_template(
    conn: Conn,
    name: str,
    steps: Sequence[JsonObject],
    *,
    description: str | None = None,
    created_by: str | None = None,
) -> TemplateVersion:
    """Store *steps* as the next version of template *name* (wraps fn_mot_template_register).

    Raises InvalidInput naming the step when the steps are not a valid DAG of known executors.
    """
    answer = call(conn, REGISTER_SQL, (name, Jsonb(list(steps)), description, created_by))
    return TemplateVersion.from_answer(answer)


EMIT_SQL: LiteralString = """
    SELECT conveyor.fn_mot_graph_emit(template => %s::text, version => %s::integer,
                                      params => %s::jsonb, idempotency_key => %s::text,
                                      dry_run => %s::boolean, created_by => %s::text)
"""


def emit(
    conn: Conn,
    template: str,
    *,
    version: int | None = None,
    params: JsonObject | None = None,
    idempotency_key: str | None = None,
    created_by: str | None = None,
) -> Emitted:
    """Emit *template* as a workflow inside the caller's transaction (wraps fn_mot_graph_emit).

    *version* None is the latest; *params* are merged over each step's payload. Raises Disabled
    while workflow.mot.enabled is false and Refused (not_found) for an unknown template.
    """
    answer = call(
        conn,
        EMIT_SQL,
        (template, version, Jsonb(params or {}), idempotency_key, False, created_by),
    )
    return Emitted.from_answer(answer)


def plan(
    conn: Conn, template: str, *, version: int | None = None, params: JsonObject | None = None
) -> list[PlannedStep]:
    """The steps emit would create, writing nothing (fn_mot_graph_emit with dry_run)."""
    answer = call(conn, EMIT_SQL, (template, version, Jsonb(params or {}), None, True, None))
    return [PlannedStep.from_answer(item) for item in answer["steps"]]


CANCEL_SQL: LiteralString = """
    SELECT conveyor.fn_job_workflow_cancel(workflow_id => %s::bigint, reason => %s::text,
                                           cancelled_by => %s::text)
"""


def cancel(
    conn: Conn, workflow_id: int, *, reason: str | None = None, cancelled_by: str | None = None
) -> JsonObject:
    """Cancel a workflow (wraps fn_job_workflow_cancel); answers the counts of steps cancelled
    and asked to stop. Raises Refused (not_found, already_finished)."""
    return call(conn, CANCEL_SQL, (workflow_id, reason, cancelled_by))


COMPLETE_STEP_SQL: LiteralString = """
    SELECT conveyor.fn_job_workflow_complete_step(workflow_id => %s::bigint, step => %s::text,
                                                  completed_by => %s::text, result => %s::jsonb)
"""


def complete_step(
    conn: Conn,
    workflow_id: int,
    step: str,
    *,
    completed_by: str | None = None,
    result: JsonObject | None = None,
) -> JsonObject:
    """Finish an operator step as a person (wraps fn_job_workflow_complete_step).

    Raises Refused: not_ready (parents still running), in_progress, already_finished,
    not_an_operator_step, not_found.
    """
    params = (workflow_id, step, completed_by, Jsonb(result) if result is not None else None)
    return call(conn, COMPLETE_STEP_SQL, params)


PARENTS_SQL: LiteralString = "SELECT conveyor.fn_job_workflow_parents(job_id => %s::bigint)"


def _parents(answer: JsonObject) -> dict[str, Parent]:
    return {key: Parent.from_answer(key, item) for key, item in answer["parents"].items()}


def parents(conn: Conn, job_id: int) -> dict[str, Parent]:
    """The parents of the workflow step whose job is *job_id* ({} for a plain job)."""
    return _parents(call(conn, PARENTS_SQL, (job_id,)))


async def aparents(conn: psycopg.AsyncConnection[Any], job_id: int) -> dict[str, Parent]:
    """The asyncio twin of `parents`."""
    return _parents(await acall(conn, PARENTS_SQL, (job_id,)))


REFRESH_SQL: LiteralString = "SELECT conveyor.fn_job_workflow_refresh()"


def refresh(conn: Conn) -> JsonObject:
    """Run the workflow tick once (wraps fn_job_workflow_refresh); answers its counters."""
    return call(conn, REFRESH_SQL)


_LIST_SQL: LiteralString = """
    SELECT w.* FROM conveyor.v_job_workflow AS w
     WHERE %(status)s::text IS NULL OR w.status = %(status)s
     ORDER BY w.workflow_id DESC
     LIMIT %(limit)s
"""


def list_workflows(conn: Conn, *, status: str | None = None, limit: int = 50) -> list[Workflow]:
    """The newest workflows (all, or those in *status*), newest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(_LIST_SQL, {"status": status, "limit": limit}).fetchall()
    return [Workflow.from_row(row) for row in rows]


def get(conn: Conn, workflow_id: int) -> Workflow | None:
    """One workflow, or None."""
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "SELECT w.* FROM conveyor.v_job_workflow AS w WHERE w.workflow_id = %s", (workflow_id,)
        ).fetchone()
    return Workflow.from_row(row) if row else None


def steps(conn: Conn, workflow_id: int) -> list[Step]:
    """The steps of a workflow in template order, with their states."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "SELECT s.* FROM conveyor.v_job_workflow_step AS s WHERE s.workflow_id = %s"
            " ORDER BY s.ord",
            (workflow_id,),
        ).fetchall()
    return [Step.from_row(row) for row in rows]
