"""Prometheus metrics read from SQL at each scrape: jobs by state and queue, dead letters,
heartbeat ages, outbox lag and the leader term. Served by the console at /metrics.

Nothing is counted in process memory: every figure is the database's, so any number of consoles
(or a restart) report the same values.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any, LiteralString

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.cli.context import applied_phases
from conveyor.web import queries
from conveyor.web.sessions import current_user
from conveyor.web.state import state

HEARTBEATS_SQL: LiteralString = """
    SELECT h.component, h.component_kind, h.status_hint, h.heartbeat_age_seconds
      FROM conveyor.v_queue_health AS h
"""
OUTBOX_LAG_SQL: LiteralString = """
    SELECT l.consumer, l.lag_events,
           coalesce(extract(epoch FROM clock_timestamp() - l.oldest_unread_at), 0)
      FROM conveyor.v_event_outbox_cursor_lag AS l
"""
LEADER_SQL: LiteralString = """
    SELECT ol.name, ol.term, ol.active FROM conveyor.v_orchestrator_leader AS ol
"""
# Jobs finished in the last 5 minutes (a range of job_queue_finished_idx): how many, how long
# they waited from ready to their last claim, and how long that attempt ran.
FINISHED_SQL: LiteralString = """
    SELECT count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY d.waited),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY d.waited),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY d.ran),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY d.ran)
      FROM conveyor.job_queue AS jq
     CROSS JOIN LATERAL (
           SELECT extract(epoch FROM jq.started_at - jq.run_at) AS waited,
                  extract(epoch FROM jq.finished_at - jq.started_at) AS ran
           ) AS d
     WHERE jq.status IN ('succeeded', 'cancelled') AND jq.finished_at > now() - interval '5 minutes'
"""


class DatabaseCollector(Collector):
    """Collect conveyor's figures from the database on every scrape."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        with self.pool.connection() as conn:
            applied = applied_phases(conn)
            if 1 in applied:
                yield from _jobs(conn)
            if 3 in applied:
                yield from _heartbeats(conn)
            yield from _outbox(conn)


def _jobs(conn: psycopg.Connection[Any]) -> Iterator[Metric]:
    figures = queries.queues(conn)
    ready = GaugeMetricFamily(
        "conveyor_jobs", "Live jobs per queue and state (exact).", labels=["queue", "state"]
    )
    dead = GaugeMetricFamily(
        "conveyor_dead_letters_open", "Unresolved dead letters per queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "conveyor_oldest_ready_job_age_seconds",
        "Age of the oldest job ready to run, per queue.",
        labels=["queue"],
    )
    paused = GaugeMetricFamily(
        "conveyor_queue_paused", "1 while a queue is paused.", labels=["queue"]
    )
    for q in figures:
        ready.add_metric([q.queue, "ready"], q.ready)
        ready.add_metric([q.queue, "scheduled"], q.scheduled)
        ready.add_metric([q.queue, "in_progress"], q.in_progress)
        dead.add_metric([q.queue], q.dead_letters)
        oldest.add_metric([q.queue], q.oldest_ready_seconds or 0.0)
        paused.add_metric([q.queue], 1.0 if q.paused else 0.0)
    yield from (ready, dead, oldest, paused)
    counts = queries.states(conn)
    total = GaugeMetricFamily(
        "conveyor_jobs_by_state",
        "Jobs in job_queue per state (estimated from statistics on a large table).",
        labels=["state", "estimated"],
    )
    for name, count in counts.counts.items():
        total.add_metric([name, str(counts.estimated).lower()], count)
    yield total
    row = conn.execute(FINISHED_SQL).fetchone()
    assert row is not None  # an aggregate always returns its row
    finished = GaugeMetricFamily(
        "conveyor_jobs_finished_last_5m",
        "Jobs that succeeded or were cancelled in the last 5 minutes.",
    )
    finished.add_metric([], int(row[0]))
    wait = GaugeMetricFamily(
        "conveyor_job_wait_seconds",
        "Ready to claimed (latest attempt), jobs finished in the last 5 minutes.",
        labels=["quantile"],
    )
    run = GaugeMetricFamily(
        "conveyor_job_run_seconds",
        "Claimed to finished (latest attempt), jobs finished in the last 5 minutes.",
        labels=["quantile"],
    )
    for family, p50, p95 in ((wait, row[1], row[2]), (run, row[3], row[4])):
        family.add_metric(["0.5"], float("nan") if p50 is None else float(p50))
        family.add_metric(["0.95"], float("nan") if p95 is None else float(p95))
    yield from (finished, wait, run)


def _heartbeats(conn: psycopg.Connection[Any]) -> Iterator[Metric]:
    age = GaugeMetricFamily(
        "conveyor_heartbeat_age_seconds",
        "Seconds since each live component's last beat (NaN: never beat).",
        labels=["component", "kind", "status"],
    )
    for component, kind, status, seconds in conn.execute(HEARTBEATS_SQL).fetchall():
        age.add_metric([component, kind, status], float("nan") if seconds is None else seconds)
    yield age
    term = GaugeMetricFamily(
        "conveyor_leader_term", "Orchestrator leadership term.", labels=["name", "active"]
    )
    for name, value, active in conn.execute(LEADER_SQL).fetchall():
        term.add_metric([name, str(bool(active)).lower()], value)
    yield term


def _outbox(conn: psycopg.Connection[Any]) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "conveyor_outbox_lag_events",
        "Outbox events a consumer has not read yet.",
        labels=["consumer"],
    )
    age = GaugeMetricFamily(
        "conveyor_outbox_lag_seconds",
        "Age of the oldest event a consumer has not read yet.",
        labels=["consumer"],
    )
    for consumer, events, seconds in conn.execute(OUTBOX_LAG_SQL).fetchall():
        lag.add_metric([consumer], events)
        age.add_metric([consumer], float(seconds))
    yield from (lag, age)


def exposition(pool: ConnectionPool[psycopg.Connection[Any]]) -> bytes:
    """The metrics in Prometheus's text format, read now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(pool))
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    """/metrics for a logged-in user or a scraper sending `Authorization: Bearer <token>`."""
    console = state(request)
    sent = request.headers.get("authorization", "")
    token_ok = console.metrics_token is not None and hmac.compare_digest(
        sent.encode(), f"Bearer {console.metrics_token}".encode()
    )
    if not token_ok and current_user(request) is None:
        raise HTTPException(
            401,
            "log in, or send Authorization: Bearer <token> (conveyor web --metrics-token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = await run_in_threadpool(exposition, console.reads)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
