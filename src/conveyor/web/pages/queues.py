"""Queues: backlog, running jobs and dead letters per queue; pause and resume (operators)."""

from __future__ import annotations

import logging
from typing import LiteralString

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.web import queries
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

PAUSE_SQL: LiteralString = "SELECT conveyor.fn_job_queue_pause(queue => %s, paused_by => %s)"
RESUME_SQL: LiteralString = "SELECT conveyor.fn_job_queue_resume(queue => %s, resumed_by => %s)"


def queues_page(request: Request) -> Response:
    user = viewer(request)
    rows = read(request, queries.queues)
    return render(request, "queues.html", "queues", user, queues=rows)


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
