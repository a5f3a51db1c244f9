"""Queues: backlog, running jobs and dead letters per queue; pause and resume (operators)."""

from __future__ import annotations

import logging
from typing import Any, LiteralString

import psycopg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.cli.context import applied_phases
from conveyor.web import queries
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

PAUSE_SQL: LiteralString = "SELECT conveyor.fn_job_queue_pause(queue => %s, paused_by => %s)"
RESUME_SQL: LiteralString = "SELECT conveyor.fn_job_queue_resume(queue => %s, resumed_by => %s)"


# Queues live workers claim from, so an idle queue can be paused before its next job.
WORKER_QUEUES_SQL: LiteralString = """
    SELECT DISTINCT q.name
      FROM conveyor.queue_heartbeat AS h
     CROSS JOIN LATERAL jsonb_array_elements_text(
           CASE WHEN jsonb_typeof(h.metadata -> 'queues') = 'array' THEN h.metadata -> 'queues'
                ELSE '[]' END) AS q(name)
     WHERE h.deregistered_at IS NULL AND h.component_kind = 'worker'
"""


def _load(conn: psycopg.Connection[Any]) -> list[queries.QueueFigures]:
    rows = queries.queues(conn)
    if 3 in applied_phases(conn):
        known = {q.queue for q in rows}
        idle = [str(r[0]) for r in conn.execute(WORKER_QUEUES_SQL).fetchall()]
        rows += [
            queries.QueueFigures(name, 0, 0, None, 0, 0, False)
            for name in idle
            if name not in known
        ]
    return sorted(rows, key=lambda q: q.queue)


def queues_page(request: Request) -> Response:
    user = viewer(request)
    return render(request, "queues.html", "queues", user, queues=read(request, _load))


async def _toggle(request: Request, sql: LiteralString, verb: str) -> Response:
    user, form = await action_form(request)
    queue = str(form.get("queue", ""))
    answer = await act(request, sql, (queue, user.name))
    already = " (it already was)" if answer.get("already") else ""
    log.info("console: %s %s queue %s", user.name, verb, queue)
    flash(request, f"{verb} queue {queue}{already}")
    return RedirectResponse("/queues", status_code=303)


async def pause(request: Request) -> Response:
    return await _toggle(request, PAUSE_SQL, "paused")


async def resume(request: Request) -> Response:
    return await _toggle(request, RESUME_SQL, "resumed")


routes = [
    Route("/queues", queues_page, methods=["GET"]),
    Route("/queues/pause", pause, methods=["POST"]),
    Route("/queues/resume", resume, methods=["POST"]),
]
