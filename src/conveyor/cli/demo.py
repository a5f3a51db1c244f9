"""`conveyor demo`: a tour on a real database (the embedded one when no URL is set).

Applies every implemented phase (ratified as "demo"), switches the job substrate on, runs jobs
through the SQL functions and through a real worker process, then shows the roadmap's critical
milestone: a worker that dies goes silent, and the alarm reaches the watchdog.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click
import psycopg
from rich.table import Table

from conveyor import db, jobs, tick
from conveyor.calls import call
from conveyor.cli.context import connection, console, state
from conveyor.cli.operations import tick_table
from conveyor.cli.phase import gate_table, status_table
from conveyor.cli.report import report_tables
from conveyor.phases import catalog, runner

WORKER = "demo-worker"


def _apply_phases(conn: psycopg.Connection[Any]) -> None:
    applied = runner.applied_phases(conn)
    for phase in catalog.PHASES:
        if not phase.implemented:
            continue
        if phase.number in applied:
            console.print(f"phase {phase.number}: already applied")
            continue
        runner.ratify(conn, phase.number, "demo", "ratified by `conveyor demo`")
        result = runner.apply(conn, phase.number, "demo")
        console.print(f"phase {phase.number}: applied ({len(result.objects)} objects)")
        if result.gate is not None:
            console.print(gate_table(result.gate))


def _set(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    call(
        conn,
        "SELECT conveyor.fn_config_set(key => %s, value => %s::jsonb, updated_by => 'demo')",
        (key, value),
    )
    console.print(f"flag {key} → {value}")


def _run_jobs_by_hand(conn: psycopg.Connection[Any]) -> None:
    ids = [
        jobs.enqueue(conn, "demo.echo", {"n": n}, queue="demo", priority=n % 2) for n in range(1, 6)
    ]
    console.print(f"enqueued jobs {ids} on queue 'demo'")
    claimed = jobs.claim(conn, "demo-by-hand", queues=["demo"], batch=10, lease_seconds=30)
    table = Table(title="claimed and completed through the SQL functions (priority, then age)")
    for column in ("job", "kind", "payload", "priority", "attempt", "lease token"):
        table.add_column(column)
    for job in claimed:
        jobs.complete(conn, job.job_id, job.lease_token, {"echo": job.payload})
        table.add_row(
            str(job.job_id),
            job.kind,
            str(job.payload),
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            str(job.lease_token)[:8] + "…",
        )
    console.print(table)


def _count(conn: psycopg.Connection[Any], sql: Any, params: Any = None) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _worker_goes_silent(conn: psycopg.Connection[Any], url: str) -> None:
    """Run a real worker process, kill it, and follow the alarm to the watchdog."""
    console.rule("a worker process runs jobs, then dies")
    ids = jobs.enqueue_many(
        conn, [{"kind": "demo.echo", "queue": "demo", "payload": {"n": n}} for n in range(20)]
    )
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--app",
            "conveyor.demo_app:registry",
            "--queue",
            "demo",
            "--name",
            WORKER,
            "--poll-interval",
            "0.1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        done_sql = (
            "SELECT count(*) FROM conveyor.job_queue WHERE id = ANY(%s) AND status = 'succeeded'"
        )
        while _count(conn, done_sql, (ids,)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        console.print(f"worker {WORKER} ran {_count(conn, done_sql, (ids,))} of {len(ids)} jobs")
        worker.send_signal(signal.SIGKILL)  # a crash: no graceful deregistration
        worker.wait(timeout=10)
        console.print(f"worker {WORKER} killed with SIGKILL (pid {worker.pid})")
    finally:
        if worker.poll() is None:
            worker.kill()
    # Instead of waiting 10 × the cadence for real, move its last beat back in the database.
    conn.execute(
        "UPDATE conveyor.queue_heartbeat AS qh"
        "   SET last_beat_at = clock_timestamp() - 10 * make_interval(secs => qh.cadence_seconds)"
        "                      - make_interval(secs => 300)"
        " WHERE qh.component = %s",
        (WORKER,),
    )
    console.print("simulated the silence: its last beat moved back past the stale threshold")
    for _ in range(2):  # the silent event, then the receivers read it
        console.print(tick_table(tick.run(conn)))
    alerts = conn.execute(
        "SELECT a.id, a.component, a.alert, a.raised_at FROM conveyor.queue_watchdog_alert AS a"
        " WHERE a.component = %s ORDER BY a.id",
        (WORKER,),
    ).fetchall()
    table = Table(title="watchdog alerts (system/queue_worker_silent reached the watchdog)")
    for column in ("id", "component", "alert", "raised at"):
        table.add_column(column)
    for row in alerts:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    zones = conn.execute("SELECT z.component FROM conveyor.v_red_zones AS z").fetchall()
    console.print(f"red zones: {', '.join(str(z[0]) for z in zones) or 'none'}")
    health = conn.execute(
        "SELECT h.component, h.status_hint FROM conveyor.v_queue_health AS h ORDER BY 1"
    ).fetchall()
    console.print("v_queue_health: " + ", ".join(f"{c}={hint}" for c, hint in health))


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Apply the phases, switch the substrate on, run jobs, watch a dead worker raise the alarm."""
    url = db.resolve_url(state(ctx).settings)
    with connection(ctx) as conn:
        console.rule("conveyor demo")
        info = conn.info
        console.print(
            f"database: {info.host}:{info.port}/{info.dbname} (server {info.server_version})"
        )
        _apply_phases(conn)
        _set(conn, "queue.job_substrate.enabled", "true")
        _run_jobs_by_hand(conn)
        if 3 in runner.applied_phases(conn):
            _set(conn, "queue.lease_reaper.enabled", "true")
            _worker_goes_silent(conn, url)
        console.rule("conveyor phase status")
        console.print(status_table(runner.status(conn)))
        console.rule("conveyor report")
        for table in report_tables(runner.report(conn)):
            console.print(table)
