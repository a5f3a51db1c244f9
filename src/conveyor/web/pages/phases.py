"""Phases: state, ratification, the latest gate run with its items, and the flags — read-only."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.phases import runner
from conveyor.web.sessions import viewer
from conveyor.web.state import read, render

LATEST_GATES_SQL: LiteralString = """
    SELECT DISTINCT ON (g.phase) g.phase, g.items
      FROM conveyor_meta.gate_run AS g
     ORDER BY g.phase, g.id DESC
"""


def _load(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    statuses = runner.status(conn)
    gates = {int(phase): items for phase, items in conn.execute(LATEST_GATES_SQL).fetchall()}
    return {"statuses": statuses, "gates": gates}


def phases_page(request: Request) -> Response:
    user = viewer(request)
    # runner.status bootstraps the ledger (CREATE … IF NOT EXISTS), which a standby refuses.
    data = read(request, _load, primary=True)
    return render(request, "phases.html", "phases", user, **data)


routes = [Route("/phases", phases_page, methods=["GET"])]
