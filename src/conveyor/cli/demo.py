"""`conveyor demo`: a tour on a real database (the embedded one when no URL is set)."""

from __future__ import annotations

from typing import Any

import click
import psycopg
from rich.table import Table

from conveyor import jobs
from conveyor.calls import call
from conveyor.cli.context import connection, console
from conveyor.cli.phase import gate_table, status_table
from conveyor.cli.report import report_tables
from conveyor.phases import runner

DEMO_PHASES = (0, 1)


def _apply_phases(conn: psycopg.Connection[Any]) -> None:
    applied = runner.applied_phases(conn)
    for number in DEMO_PHASES:
        if number in applied:
            console.print(f"phase {number}: already applied")
            continue
        runner.ratify(conn, number, "demo", "ratified by `conveyor demo`")
        result = runner.apply(conn, number, "demo")
        console.print(f"phase {number}: applied ({len(result.objects)} objects)")
        if result.gate is not None:
            console.print(gate_table(result.gate))


def _run_jobs(conn: psycopg.Connection[Any]) -> None:
    call(
        conn,
        "SELECT conveyor.fn_config_set(key => 'queue.job_substrate.enabled', value => 'true',"
        " updated_by => 'demo')",
    )
    console.print("flag queue.job_substrate.enabled → true")
    ids = [
        jobs.enqueue(conn, "demo.echo", {"n": n}, queue="demo", priority=n % 2) for n in range(1, 6)
    ]
    console.print(f"enqueued jobs {ids} on queue 'demo'")
    claimed = jobs.claim(conn, "demo-worker", queues=["demo"], batch=10, lease_seconds=30)
    table = Table(title="claimed and completed (priority first, then age)")
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


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Apply phases 0–1, switch the job substrate on, run a few jobs, show status and report."""
    with connection(ctx) as conn:
        console.rule("conveyor demo")
        info = conn.info
        console.print(
            f"database: {info.host}:{info.port}/{info.dbname} (server {info.server_version})"
        )
        _apply_phases(conn)
        _run_jobs(conn)
        console.rule("conveyor phase status")
        console.print(status_table(runner.status(conn)))
        console.rule("conveyor report")
        for table in report_tables(runner.report(conn)):
            console.print(table)
