"""`conveyor demo`: a tour on a real database (the embedded one when no URL is set).

Applies every implemented phase (ratified as "demo"), switches the job substrate on, runs jobs
through the SQL functions and through a real worker process, then shows the roadmap's critical
milestone: a worker that dies goes silent, and the alarm reaches the watchdog. One line per
step (`-v` adds the tables); it ends with a summary, leaves `conveyor health` green (or says why
not) and names the next commands to try.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from conveyor import db, jobs, tick
from conveyor.calls import call
from conveyor.cli.context import connection, console, state
from conveyor.cli.health import explain
from conveyor.cli.operations import tick_table
from conveyor.cli.phase import gate_table, status_table
from conveyor.cli.report import report_tables
from conveyor.phases import catalog, runner

WORKER = "demo-worker"
NEXT = (
    ("conveyor phase status", "the phases, their flags and their last gate"),
    ("conveyor config list", "every flag and setting: value, default, meaning"),
    ("conveyor health", "each component's heartbeat; exit 0 when all are fresh"),
)


@dataclass(slots=True)
class _Run:
    """What this run did, for the summary."""

    verbose: bool
    by_hand: int = 0
    by_worker: int = 0
    pilot: str | None = None  # the pilot record's journey, when phase 5 is applied
    alerts: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    first_alert: int = 0  # alerts with a larger id are this run's


def _apply_phases(conn: psycopg.Connection[Any], run: _Run) -> None:
    applied = runner.applied_phases(conn)
    for phase in catalog.PHASES:
        if not phase.implemented:
            continue
        if phase.number in applied:
            console.print(f"phase {phase.number}: already applied")
            continue
        runner.ratify(conn, phase.number, "demo", "ratified by `conveyor demo`")
        result = runner.apply(conn, phase.number, "demo")
        gate = ""
        if result.gate is not None:
            passed = sum(1 for item in result.gate.items if item.passed)
            gate = f", gate {passed}/{len(result.gate.items)} checks passed"
        console.print(f"phase {phase.number}: applied ({len(result.objects)} objects{gate})")
        if run.verbose and result.gate is not None:
            console.print(gate_table(result.gate))


def _set(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    call(
        conn,
        "SELECT conveyor.fn_config_set(key => %s, value => %s::jsonb, updated_by => 'demo')",
        (key, value),
    )
    console.print(f"flag {key} → {value}  (`conveyor config set {key} {value}`)")


def _run_jobs_by_hand(conn: psycopg.Connection[Any], run: _Run) -> None:
    ids = [
        jobs.enqueue(conn, "demo.echo", {"n": n}, queue="demo", priority=n % 2) for n in range(1, 6)
    ]
    claimed = jobs.claim(conn, "demo-by-hand", queues=["demo"], batch=10, lease_seconds=30)
    table = Table(title="claimed and completed through the SQL functions (priority, then age)")
    for column in ("job", "kind", "payload", "priority", "attempt", "lease token"):
        table.add_column(column)
    for job in claimed:
        jobs.complete(conn, job.job_id, job.lease_token, {"echo": job.payload})
        table.add_row(
            str(job.job_id),
            job.kind,
            escape(str(job.payload)),
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            str(job.lease_token)[:8] + "…",
        )
    run.by_hand = len(claimed)
    console.print(
        f"enqueued jobs {ids[0]}–{ids[-1]} on queue 'demo'; {len(claimed)} claimed and completed "
        "through the SQL functions (fn_job_claim, fn_job_complete)"
    )
    if run.verbose:
        console.print(table)


def _run_the_pilot(conn: psycopg.Connection[Any], url: str, run: _Run) -> None:
    """Phase 5: one staging record marked and approved; CUT, VERIFY, CLEANUP run by themselves."""
    from conveyor import pilot

    record = pilot.demo_one(conn, url)
    run.pilot = (
        f"record {record.id} ({record.collection}/{record.record_key}) marked, approved → "
        f"{record.status}"
    )
    console.print(
        f"pilot: {run.pilot} by a pilot worker through outbox → registry → queue; the operator "
        f"never touched CUT (`conveyor staging show {record.id}`)",
        markup=False,
    )


def _count(conn: psycopg.Connection[Any], sql: Any, params: Any = None) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _run_and_kill_a_worker(conn: psycopg.Connection[Any], url: str, run: _Run) -> None:
    ids = jobs.enqueue_many(
        conn, [{"kind": "demo.echo", "queue": "demo", "payload": {"n": n}} for n in range(20)]
    )
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    argv = ["worker", "--app", "conveyor.demo_app:registry", "--queue", "demo", "--name", WORKER]
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *argv, "--poll-interval", "0.1"],
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
        run.by_worker = _count(conn, done_sql, (ids,))
        worker.send_signal(signal.SIGKILL)  # a crash: no graceful deregistration
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    console.print(
        f"worker process {WORKER} ran {run.by_worker} of {len(ids)} jobs, then was killed with "
        "SIGKILL (a crash: it could not deregister)"
    )


def _follow_the_alarm(conn: psycopg.Connection[Any], run: _Run) -> None:
    """Age the dead worker's last beat, tick twice, and show what reached the watchdog."""
    # A round while its last beat is recent closes an episode a previous run may have left open
    # (one silent event per episode: an open one would swallow this run's alarm).
    tick.run(conn)
    run.first_alert = first_alert = _count(
        conn, "SELECT coalesce(max(a.id), 0) FROM conveyor.queue_watchdog_alert AS a"
    )
    # Instead of waiting 10 × the cadence for real, move its last beat back in the database.
    conn.execute(
        "UPDATE conveyor.queue_heartbeat AS qh"
        "   SET last_beat_at = clock_timestamp() - 10 * make_interval(secs => qh.cadence_seconds)"
        "                      - make_interval(secs => 300)"
        " WHERE qh.component = %s",
        (WORKER,),
    )
    console.print("simulated its silence: its last beat moved back past the stale threshold")
    for _ in range(2):  # the silent event, then the receivers read it
        results = tick.run(conn)
        if run.verbose:
            console.print(tick_table(results))
    console.print(
        "ran two tick rounds: the stale check emitted the silent event, receivers read it"
    )
    alerts = conn.execute(
        "SELECT a.id, a.component, a.alert, a.raised_at FROM conveyor.queue_watchdog_alert AS a"
        " WHERE a.component = %s AND a.id > %s ORDER BY a.id",
        (WORKER, first_alert),
    ).fetchall()
    run.alerts = [f"#{row[0]} {row[2]}" for row in alerts]
    console.print(f"watchdog alerts for {WORKER}: {', '.join(run.alerts) or 'none'}", markup=False)
    if run.verbose:
        table = Table(title="watchdog alerts (system/queue_worker_silent reached the watchdog)")
        for column in ("id", "component", "alert", "raised at"):
            table.add_column(column)
        for row in alerts:
            table.add_row(*(escape(str(v)) for v in row))
        console.print(table)
    zones = conn.execute(
        "SELECT z.component FROM conveyor.v_red_zones AS z WHERE z.component = %s", (WORKER,)
    ).fetchall()
    run.zones = [str(z[0]) for z in zones]
    console.print(f"red zones: {', '.join(run.zones) or 'none'}", markup=False)


def _leave_health_green(conn: psycopg.Connection[Any], run: _Run) -> list[str]:
    """Acknowledge this run's alerts, forget the killed worker; what is still not fresh, why."""
    call(conn, "SELECT conveyor.fn_heartbeat_deregister(component => %s::text)", (WORKER,))
    for _ in range(2):  # closes the episode (a recovered event), then the red zone reads it;
        tick.run(conn)  # the round also ticks the outbound worker, so its heartbeat is fresh
    conn.execute(  # this run's alerts: the silence, and the recovery the deregistration closed
        "SELECT conveyor.fn_watchdog_acknowledge(alert_id => a.id, acknowledged_by => 'demo')"
        "  FROM conveyor.queue_watchdog_alert AS a"
        " WHERE a.component = %s AND a.id > %s AND a.acknowledged_at IS NULL",
        (WORKER, run.first_alert),
    )
    console.print(
        f"cleaned up: acknowledged the alert, forgot {WORKER} (`conveyor health --forget {WORKER}`)"
    )
    left = conn.execute(
        "SELECT count(*) FROM conveyor.v_red_zones AS z WHERE z.component = %s", (WORKER,)
    ).fetchone()
    if left and left[0]:
        console.print(f"red zone {WORKER} is still open", markup=False)
    rows = conn.execute(
        "SELECT h.component, h.component_kind, h.status_hint,"
        "       round(h.heartbeat_age_seconds::numeric, 1)"
        "  FROM conveyor.v_queue_health AS h WHERE h.status_hint <> 'fresh' ORDER BY 1"
    ).fetchall()
    return [explain(str(c), str(k), str(h), age) for c, k, h, age in rows]


def _summary(run: _Run, not_fresh: list[str] | None) -> None:
    console.rule("summary")
    console.print(
        f"ran: {run.by_hand} jobs by hand through the SQL functions"
        + (f", {run.by_worker} by a real worker process" if not_fresh is not None else "")
    )
    if run.pilot is not None:
        console.print(f"pilot: {run.pilot}", markup=False)
    if not_fresh is not None:
        console.print(
            f"alarm: {WORKER} was killed → silent → watchdog alert "
            f"{', '.join(run.alerts) or 'none'} → red zone {', '.join(run.zones) or 'none'}",
            markup=False,
        )
        if not_fresh:
            console.print("health: not green, because:")
            for line in not_fresh:
                console.print(f"  {line}", markup=False)
        else:
            console.print(
                "health: green (`conveyor health` exits 0); the outbound worker "
                "iu_outbound_default turns late after 2 × its cadence unless something ticks "
                "it: `conveyor orchestrator` (or `conveyor tick` from cron)"
            )
    console.print("next, try:")
    for command, what in NEXT:
        console.print(f"  {command:<24} {what}")


@click.command()
@click.option("-v", "--verbose", is_flag=True, help="Show gate, job, tick and report tables.")
@click.pass_context
def demo(ctx: click.Context, verbose: bool) -> None:
    """Apply the phases, switch the substrate on, run jobs, watch a dead worker raise the alarm."""
    url = db.resolve_url(state(ctx).settings)
    run = _Run(verbose)
    not_fresh: list[str] | None = None
    with connection(ctx) as conn:
        console.rule("conveyor demo")
        info = conn.info
        console.print(
            f"database: {info.host}:{info.port}/{info.dbname} (server {info.server_version})"
        )
        _apply_phases(conn, run)
        _set(conn, "queue.job_substrate.enabled", "true")
        _run_jobs_by_hand(conn, run)
        if 5 in runner.applied_phases(conn):
            _run_the_pilot(conn, url, run)
        if 3 in runner.applied_phases(conn):
            _set(conn, "queue.lease_reaper.enabled", "true")
            _run_and_kill_a_worker(conn, url, run)
            _follow_the_alarm(conn, run)
            not_fresh = _leave_health_green(conn, run)
        if verbose:
            console.rule("conveyor phase status")
            console.print(status_table(runner.status(conn)))
            console.rule("conveyor report")
            for table in report_tables(runner.report(conn)):
                console.print(table)
    _summary(run, not_fresh)
