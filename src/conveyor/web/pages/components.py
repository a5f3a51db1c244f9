"""Components: every live heartbeat with its state and why; operators may forget a dead one
(fn_heartbeat_deregister, which records no actor: the console logs who did it)."""

from __future__ import annotations

import logging
from typing import Any, LiteralString

import psycopg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.cli.context import applied_phases
from conveyor.cli.health import explain
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

COMPONENTS_SQL: LiteralString = """
    SELECT h.component, h.component_kind, h.status_hint,
           round(h.heartbeat_age_seconds::numeric, 1), h.cadence_seconds,
           h.stale_threshold_seconds, h.registered_at, h.last_beat_at, h.silent_since,
           h.backlog_count, h.in_progress_count, h.expired_lease_count, h.dead_letter_open_count,
           h.cursor_lag_events
      FROM conveyor.v_queue_health AS h
     ORDER BY h.component
"""
FORGET_SQL: LiteralString = "SELECT conveyor.fn_heartbeat_deregister(component => %s::text)"


def _load(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    if 3 not in applied_phases(conn):
        return {"phase3": False, "rows": []}
    rows = [
        (*row, "" if row[2] == "fresh" else explain(str(row[0]), str(row[1]), str(row[2]), row[3]))
        for row in conn.execute(COMPONENTS_SQL).fetchall()
    ]
    return {"phase3": True, "rows": rows}


def components_page(request: Request) -> Response:
    user = viewer(request)
    return render(request, "components.html", "components", user, **read(request, _load))


async def forget(request: Request) -> Response:
    user, form = await action_form(request)
    component = str(form.get("component", ""))
    await act(request, FORGET_SQL, (component,))
    # fn_heartbeat_deregister has no actor parameter: this log line is the record of who.
    log.warning("console: %s forgot component %s", user.name, component)
    flash(request, f"forgot {component}")
    return RedirectResponse("/components", status_code=303)


routes = [
    Route("/components", components_page, methods=["GET"]),
    Route("/components/forget", forget, methods=["POST"]),
]
