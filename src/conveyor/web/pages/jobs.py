"""Jobs: a filtered list paginated by id (newest first, never OFFSET) with an estimated total, and
one job's detail. The payload and result are shown to operators only."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.web.queries import STATES
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

PAGE_SIZE = 50
_LIST_COLUMNS: LiteralString = """
    jq.id, jq.queue, jq.kind, jq.status, jq.priority, jq.attempts, jq.max_attempts, jq.run_at,
    jq.created_at, jq.finished_at, jq.leased_by
"""
# Every column a reader may see; payload and result are added for operators.
_DETAIL_COLUMNS: LiteralString = """
    jq.id, jq.queue, jq.kind, jq.status, jq.priority, jq.attempts, jq.max_attempts,
    jq.idempotency_key, jq.run_at, jq.created_at, jq.started_at, jq.finished_at, jq.leased_by,
    jq.lease_expires_at, jq.cancel_requested_at, jq.cancel_reason, jq.last_error, jq.workflow_id
"""
CANCEL_SQL: LiteralString = "SELECT conveyor.fn_job_cancel(job_id => %s, reason => %s)"
DEAD_LETTERS_OF_JOB_SQL: LiteralString = """
    SELECT dl.id, dl.reason, dl.error, dl.attempts, dl.failed_at, dl.resolved_at, dl.resolved_by,
           dl.replayed_job_id
      FROM conveyor.job_dead_letter AS dl
     WHERE dl.job_id = %s
     ORDER BY dl.id
"""


class Filters:
    """The list's filters, read from the query string; bad values are a 400 naming the field."""

    def __init__(self, request: Request) -> None:
        params = request.query_params
        self.state = params.get("state") or None
        if self.state is not None and self.state not in STATES:
            raise HTTPException(400, f"state {self.state!r} is not one of {', '.join(STATES)}")
        self.queue = params.get("queue") or None
        self.kind = params.get("kind") or None
        self.since = _time(params.get("since"), "since")
        self.until = _time(params.get("until"), "until")
        self.before = _int(params.get("before"), "before")

    def where(self) -> sql.Composed:
        conditions: list[sql.Composable] = [sql.SQL("true")]
        for column, value in (
            ("status", self.state),
            ("queue", self.queue),
            ("kind", self.kind),
        ):
            if value is not None:
                conditions.append(sql.SQL("jq.{} = {}").format(sql.Identifier(column), value))
        if self.since is not None:
            conditions.append(sql.SQL("jq.created_at >= {}").format(self.since))
        if self.until is not None:
            conditions.append(sql.SQL("jq.created_at < {}").format(self.until))
        return sql.SQL(" AND ").join(conditions)

    def query(self, **changes: Any) -> str:
        """The query string of these filters with *changes* applied (for links)."""
        from urllib.parse import urlencode

        values = {
            "state": self.state,
            "queue": self.queue,
            "kind": self.kind,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            **changes,
        }
        return urlencode({k: v for k, v in values.items() if v is not None})


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise HTTPException(
            400, f"{name} {value!r} is not a time: write it as 2026-12-03T14:00"
        ) from error


def _int(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError as error:
        raise HTTPException(400, f"{name} {value!r} is not a job id") from error


def _list(conn: psycopg.Connection[Any], filters: Filters) -> dict[str, Any]:
    where = filters.where()
    keyset: sql.Composable = (
        sql.SQL("AND jq.id < {}").format(filters.before)
        if filters.before is not None
        else sql.SQL("")
    )
    page = sql.SQL(
        "SELECT {} FROM conveyor.job_queue AS jq WHERE {} {} ORDER BY jq.id DESC LIMIT {}"
    ).format(sql.SQL(_LIST_COLUMNS), where, keyset, PAGE_SIZE + 1)
    rows = conn.execute(page).fetchall()
    # The planner's estimate of the matching rows: a count would read every one of them.
    plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM conveyor.job_queue AS jq WHERE {}").format(
            where
        )
    ).fetchone()
    estimate = int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0
    return {
        "rows": rows[:PAGE_SIZE],
        "next_before": rows[PAGE_SIZE - 1][0] if len(rows) > PAGE_SIZE else None,
        "estimate": max(estimate, len(rows[:PAGE_SIZE])),
    }


def jobs_page(request: Request) -> Response:
    user = viewer(request)
    filters = Filters(request)
    data = read(request, lambda conn: _list(conn, filters))
    return render(request, "jobs.html", "jobs", user, filters=filters, states=STATES, **data)


def _detail(conn: psycopg.Connection[Any], job_id: int, with_payload: bool) -> dict[str, Any]:
    columns: sql.Composable = sql.SQL(_DETAIL_COLUMNS)
    if with_payload:
        columns = sql.SQL("{}, jq.payload, jq.result").format(columns)
    cursor = conn.execute(
        sql.SQL("SELECT {} FROM conveyor.job_queue AS jq WHERE jq.id = {}").format(columns, job_id)
    )
    row = cursor.fetchone()
    names = [c.name for c in cursor.description or []]
    job = dict(zip(names, row, strict=True)) if row else None
    for key in ("payload", "result"):
        if job is not None and key in job:
            job[key] = None if job[key] is None else json.dumps(job[key], indent=2)
    dead = conn.execute(DEAD_LETTERS_OF_JOB_SQL, (job_id,)).fetchall()
    return {"job": job, "dead_letters": dead}


def job_page(request: Request) -> Response:
    user = viewer(request)
    job_id = _int(request.path_params["job_id"], "job")
    assert job_id is not None
    data = read(request, lambda conn: _detail(conn, job_id, user.may_act))
    if data["job"] is None and not data["dead_letters"]:
        raise HTTPException(404, f"no job {job_id}: it may have been pruned")
    return render(request, "job.html", "jobs", user, job_id=job_id, **data)


async def cancel(request: Request) -> Response:
    user, form = await action_form(request)
    job_id = _int(str(form.get("job_id", "")), "job")
    if job_id is None:
        raise HTTPException(400, "job_id is required")
    given = str(form.get("reason") or "").strip()
    # fn_job_cancel records no actor: the reason it keeps names who cancelled.
    reason = f"cancelled by {user.name} in the console" + (f": {given}" if given else "")
    answer = await act(request, CANCEL_SQL, (job_id, reason[:2000]))
    log.info("console: %s cancelled job %s: %s", user.name, job_id, answer)
    flash(request, f"job {job_id}: {answer.get('status', 'cancelled').replace('_', ' ')}")
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


routes = [
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/jobs/cancel", cancel, methods=["POST"]),
    Route("/jobs/{job_id}", job_page, methods=["GET"]),
]
