"""Workflows (phase 6): a list filtered by status and paginated by id, and one workflow's graph of
steps drawn as inline SVG. Operators cancel a workflow or complete an operator step through
fn_job_workflow_cancel / fn_job_workflow_complete_step with their name; nobody sees payloads."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor import workflow
from conveyor.cli.context import applied_phases
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

PAGE_SIZE = 50
STATUSES = ("active", "succeeded", "failed", "cancelled")
STEP_STATES = ("waiting", "queued", "in_progress", "succeeded", "failed", "cancelled")
# Steps by state and the open steps it waits on, per workflow of the page (at most PAGE_SIZE + 1).
_LIST_SQL: LiteralString = """
    SELECT w.workflow_id, w.template, w.template_version, w.status,
           extract(epoch FROM now() - w.created_at), w.finished_at, w.steps_total, w.failed_step,
           s.waiting, s.queued, s.in_progress, s.succeeded, s.failed, s.cancelled, s.waiting_on
      FROM conveyor.v_job_workflow AS w
     CROSS JOIN LATERAL (
           SELECT count(*) FILTER (WHERE st.state = 'waiting') AS waiting,
                  count(*) FILTER (WHERE st.state = 'queued') AS queued,
                  count(*) FILTER (WHERE st.state = 'in_progress') AS in_progress,
                  count(*) FILTER (WHERE st.state = 'succeeded') AS succeeded,
                  count(*) FILTER (WHERE st.state = 'failed') AS failed,
                  count(*) FILTER (WHERE st.state IN ('cancelled', 'skipped')) AS cancelled,
                  (array_agg(st.step_key
                             || CASE WHEN st.executor = 'operator' AND st.state = 'queued'
                                     THEN ' (an operator)' ELSE '' END ORDER BY st.ord)
                       FILTER (WHERE st.state IN ('queued', 'in_progress')))[1:5] AS waiting_on
             FROM conveyor.v_job_workflow_step AS st
            WHERE st.workflow_id = w.workflow_id
           ) AS s
     WHERE {}
     ORDER BY w.workflow_id DESC
     LIMIT {}
"""
COMPLETE_STEP_SQL = workflow.COMPLETE_STEP_SQL
CANCEL_SQL = workflow.CANCEL_SQL
NEEDS_PHASE_6 = "needs phase 6 (MOT workflows) — run `conveyor phase apply 6`"

# The drawing: one column per layer of the graph (a root is layer 0), one row per step in it.
BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 170, 44, 60, 18, 10


@dataclass(frozen=True, slots=True)
class Box:
    """A step placed in the drawing, with the points where its edges start and end."""

    step: workflow.Step
    x: int
    y: int

    @property
    def out_x(self) -> int:
        return self.x + BOX_WIDTH

    @property
    def mid_y(self) -> int:
        return self.y + BOX_HEIGHT // 2


@dataclass(frozen=True, slots=True)
class Drawing:
    """The steps laid out in layers, the parent → child edges, and the picture's size."""

    boxes: list[Box]
    edges: list[tuple[Box, Box]]
    width: int
    height: int


def layout(steps: list[workflow.Step]) -> Drawing:
    """Place each step one layer right of its deepest parent, in template order within a layer."""
    by_key = {step.step_key: step for step in steps}
    depths: dict[str, int] = {}

    def depth(key: str) -> int:
        if key not in depths:
            parents = [p for p in by_key[key].parents if p in by_key]
            depths[key] = 1 + max(depth(p) for p in parents) if parents else 0
        return depths[key]

    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for step in sorted(steps, key=lambda s: (depth(s.step_key), s.ord)):
        layer = depths[step.step_key]
        row = rows.get(layer, 0)
        rows[layer] = row + 1
        x = MARGIN + layer * (BOX_WIDTH + GAP_X)
        boxes[step.step_key] = Box(step, x, MARGIN + row * (BOX_HEIGHT + GAP_Y))
    edges = [
        (boxes[parent], box)
        for box in boxes.values()
        for parent in box.step.parents
        if parent in boxes
    ]
    width = 2 * MARGIN + len(rows) * (BOX_WIDTH + GAP_X) - GAP_X if rows else 0
    height = 2 * MARGIN + max(rows.values(), default=0) * (BOX_HEIGHT + GAP_Y) - GAP_Y
    return Drawing(list(boxes.values()), edges, max(width, 0), max(height, 0))


def _applied(conn: psycopg.Connection[Any]) -> bool:
    return 6 in applied_phases(conn)


def _id(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as error:
        raise HTTPException(400, f"{what} must be a number, not {value[:40]!r}") from error


def _list(conn: psycopg.Connection[Any], status: str | None, before: int | None) -> dict[str, Any]:
    if not _applied(conn):
        return {"phase6": False, "rows": [], "next_before": None}
    conditions: list[sql.Composable] = [sql.SQL("true")]
    if status is not None:
        conditions.append(sql.SQL("w.status = {}").format(status))
    if before is not None:
        conditions.append(sql.SQL("w.workflow_id < {}").format(before))
    query = sql.SQL(_LIST_SQL).format(sql.SQL(" AND ").join(conditions), PAGE_SIZE + 1)
    rows = conn.execute(query).fetchall()
    following = rows[PAGE_SIZE - 1][0] if len(rows) > PAGE_SIZE else None
    return {"phase6": True, "rows": rows[:PAGE_SIZE], "next_before": following}


def workflows_page(request: Request) -> Response:
    user = viewer(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"status {status[:40]!r} is not one of {', '.join(STATUSES)}")
    before_text = request.query_params.get("before")
    before = _id(before_text, "before") if before_text else None
    data = read(request, lambda conn: _list(conn, status, before))
    return render(
        request,
        "workflows.html",
        "workflows",
        user,
        status=status,
        before=before,
        statuses=STATUSES,
        step_states=STEP_STATES,
        needs=NEEDS_PHASE_6,
        **data,
    )


def _detail(conn: psycopg.Connection[Any], workflow_id: int) -> dict[str, Any]:
    if not _applied(conn):
        return {"phase6": False, "workflow": None, "steps": []}
    found = workflow.get(conn, workflow_id)
    steps = workflow.steps(conn, workflow_id) if found else []
    return {"phase6": True, "workflow": found, "steps": steps}


def workflow_page(request: Request) -> Response:
    user = viewer(request)
    workflow_id = _id(request.path_params["workflow_id"], "a workflow id")
    data = read(request, lambda conn: _detail(conn, workflow_id))
    if data["phase6"] and data["workflow"] is None:
        raise HTTPException(404, f"no workflow {workflow_id}: see /workflows")
    drawing = layout(data["steps"])
    return render(
        request,
        "workflow.html",
        "workflows",
        user,
        workflow_id=workflow_id,
        drawing=drawing,
        box=(BOX_WIDTH, BOX_HEIGHT),
        needs=NEEDS_PHASE_6,
        **data,
    )


async def cancel(request: Request) -> Response:
    user, form = await action_form(request)
    workflow_id = _id(str(form.get("workflow_id", "")), "workflow_id")
    reason = str(form.get("reason") or "").strip()[:2000] or None
    answer = await act(request, CANCEL_SQL, (workflow_id, reason, user.name))
    log.info("console: %s cancelled workflow %s: %s", user.name, workflow_id, answer)
    flash(
        request,
        f"workflow {workflow_id} cancelled: {answer.get('cancelled', 0)} steps cancelled, "
        f"{answer.get('cancel_requested', 0)} running steps asked to stop",
    )
    return RedirectResponse(f"/workflows/{workflow_id}", status_code=303)


def _result(text: str) -> Jsonb | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise HTTPException(
            400, f"the result is not valid JSON ({error.msg} at char {error.pos}): go back"
        ) from error
    if not isinstance(value, dict):
        raise HTTPException(400, 'the result must be a JSON object, e.g. {"approved": true}')
    return Jsonb(value)


async def complete_step(request: Request) -> Response:
    user, form = await action_form(request)
    workflow_id = _id(str(form.get("workflow_id", "")), "workflow_id")
    step = str(form.get("step", ""))
    if not step:
        raise HTTPException(400, "step is required: the key of the operator step to complete")
    result = _result(str(form.get("result") or ""))
    answer = await act(request, COMPLETE_STEP_SQL, (workflow_id, step, user.name, result))
    log.info("console: %s completed step %s of workflow %s", user.name, step, workflow_id)
    flash(request, f"step {step} completed by {answer.get('completed_by', user.name)}")
    return RedirectResponse(f"/workflows/{workflow_id}", status_code=303)


routes = [
    Route("/workflows", workflows_page, methods=["GET"]),
    Route("/workflows/cancel", cancel, methods=["POST"]),
    Route("/workflows/complete-step", complete_step, methods=["POST"]),
    Route("/workflows/{workflow_id}", workflow_page, methods=["GET"]),
]
