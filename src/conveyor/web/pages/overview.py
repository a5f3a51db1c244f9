"""The overview: component health with the reason, per-queue backlog, an hour of throughput, open
dead letters, outbox lag and long transactions, on one page that refreshes itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.cli.context import applied_phases
from conveyor.cli.health import explain
from conveyor.web import queries
from conveyor.web.sessions import viewer
from conveyor.web.state import read, render

HEALTH_SQL: LiteralString = """
    SELECT h.component, h.component_kind, h.status_hint,
           round(h.heartbeat_age_seconds::numeric, 1), h.in_progress_count, h.backlog_count
      FROM conveyor.v_queue_health AS h
     ORDER BY h.component
"""
# Finished jobs per minute: an index-only range scan of job_queue_finished_idx.
THROUGHPUT_SQL: LiteralString = """
    SELECT floor(extract(epoch FROM now() - jq.finished_at) / 60)::int AS minutes_ago, count(*)
      FROM conveyor.job_queue AS jq
     WHERE jq.status IN ('succeeded', 'cancelled')
       AND jq.finished_at > now() - interval '60 minutes'
     GROUP BY 1
"""
DEAD_OPEN_SQL: LiteralString = """
    SELECT count(*) FROM conveyor.job_dead_letter AS dl WHERE dl.resolved_at IS NULL
"""
OUTBOX_LAG_SQL: LiteralString = """
    SELECT l.consumer, l.lag_events, l.oldest_unread_at
      FROM conveyor.v_event_outbox_cursor_lag AS l
     ORDER BY l.consumer
"""
LONG_TRANSACTIONS_SQL: LiteralString = """
    SELECT sa.pid, sa.usename, sa.application_name, sa.state,
           round(extract(epoch FROM clock_timestamp() - sa.xact_start)::numeric, 0),
           sa.wait_event_type
      FROM pg_stat_activity AS sa
     WHERE sa.datname = current_database()
       AND sa.xact_start < clock_timestamp() - interval '60 seconds'
       AND sa.pid <> pg_backend_pid()
     ORDER BY sa.xact_start
     LIMIT 20
"""
LEADER_SQL: LiteralString = """
    SELECT ol.holder, ol.term, ol.active FROM conveyor.v_orchestrator_leader AS ol
     WHERE ol.name = 'default'
"""


@dataclass(frozen=True, slots=True)
class Component:
    """A heartbeat row as the overview shows it, with the sentence explaining its state."""

    name: str
    kind: str
    hint: str
    age: Any
    in_progress: int
    backlog: int
    reason: str


def _load(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    applied = applied_phases(conn)
    data: dict[str, Any] = {"applied": applied, "components": [], "leader": None}
    if 1 not in applied:
        return data
    if 3 in applied:
        data["components"] = [
            Component(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                r[3],
                int(r[4]),
                int(r[5]),
                "" if r[2] == "fresh" else explain(str(r[0]), str(r[1]), str(r[2]), r[3]),
            )
            for r in conn.execute(HEALTH_SQL).fetchall()
        ]
        data["leader"] = conn.execute(LEADER_SQL).fetchone()
    data["queues"] = queries.queues(conn)
    data["states"] = queries.states(conn)
    per_minute = dict.fromkeys(range(60), 0)
    for minutes_ago, count in conn.execute(THROUGHPUT_SQL).fetchall():
        if 0 <= int(minutes_ago) < 60:
            per_minute[int(minutes_ago)] = int(count)
    data["throughput"] = [per_minute[m] for m in range(59, -1, -1)]  # oldest first
    dead = conn.execute(DEAD_OPEN_SQL).fetchone()
    data["dead_open"] = int(dead[0]) if dead else 0
    data["outbox"] = conn.execute(OUTBOX_LAG_SQL).fetchall()
    data["long_transactions"] = conn.execute(LONG_TRANSACTIONS_SQL).fetchall()
    return data


def chart(values: list[int], width: int = 600, height: int = 120) -> dict[str, Any]:
    """Bars of *values* (one per minute, oldest first) scaled into an SVG box."""
    top = max(values) if values and max(values) > 0 else 1
    step = width / max(len(values), 1)
    bars = [
        {
            "x": round(i * step, 1),
            "w": round(step * 0.8, 1),
            "h": round(v / top * (height - 10), 1),
            "y": round(height - v / top * (height - 10), 1),
            "v": v,
            "ago": len(values) - 1 - i,
        }
        for i, v in enumerate(values)
    ]
    return {"bars": bars, "top": top, "width": width, "height": height, "total": sum(values)}


def overview(request: Request) -> Response:
    user = viewer(request)
    data = read(request, _load)
    if "throughput" in data:
        data["chart"] = chart(data["throughput"])
    return render(request, "overview.html", "overview", user, **data)


routes = [Route("/", overview, methods=["GET"])]
