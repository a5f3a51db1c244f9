"""`conveyor tick`, `conveyor orchestrator`, `conveyor health` and `conveyor up`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any, LiteralString

import click
from rich.table import Table

from conveyor import db, tick
from conveyor.calls import call
from conveyor.cli.context import connection, console, err_console, state
from conveyor.orchestrator import Orchestrator, OrchestratorConfig
from conveyor.pilot import WORKER_ARGS as PILOT_WORKER_ARGS


def tick_table(results: list[tick.StepResult]) -> Table:
    table = Table(title="tick")
    for column in ("step", "status", "detail", "ms"):
        table.add_column(column)
    colour = {"ok": "green", "refused": "yellow", "skipped": "dim", "error": "red"}
    for result in results:
        table.add_row(
            result.step,
            f"[{colour[result.status]}]{result.status}[/{colour[result.status]}]",
            result.detail,
            f"{result.seconds * 1000:.1f}",
        )
    return table


@click.command("tick")
@click.pass_context
def tick_command(ctx: click.Context) -> None:
    """Run one tick round (for host cron): reaper, stale check, outbound, retention, periodic."""
    with connection(ctx, application_name="conveyor-tick") as conn:
        results = tick.run(conn)
    console.print(tick_table(results))
    if any(r.status == "error" for r in results):
        raise SystemExit(1)


@click.command()
@click.option("--name", default=None, help="Orchestrator name (default host:pid:random).")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True)
@click.option(
    "--lease-seconds",
    type=click.IntRange(2, 3600),
    default=None,
    help="Leader lease (default: queue.orchestrator.leader_lease_seconds).",
)
@click.pass_context
def orchestrator(
    ctx: click.Context, name: str | None, interval: float, lease_seconds: int | None
) -> None:
    """Run tick rounds while leading; several may run, one leads."""
    url = db.resolve_url(state(ctx).settings)
    runner = Orchestrator(url, OrchestratorConfig(name, interval, lease_seconds))
    err_console.print(f"orchestrator {runner.name}: ticking every {interval} s while leading")
    _run_until_signal(runner)


def _run_until_signal(runner: Orchestrator) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stop)
        await runner.run()

    asyncio.run(main())


HEALTH_SQL: LiteralString = """
    SELECT h.component, h.component_kind AS kind, h.status_hint,
           round(h.heartbeat_age_seconds::numeric, 1) AS beat_age_s,
           h.cursor_lag_events AS cursor_lag, h.backlog_count AS backlog,
           round(h.oldest_ready_age_seconds::numeric, 1) AS oldest_ready_s,
           h.in_progress_count AS in_progress, h.expired_lease_count AS expired_leases,
           h.dead_letter_open_count AS dead_letters
      FROM conveyor.v_queue_health AS h
     ORDER BY h.component
"""
SIGNALS_SQL: LiteralString = """
    SELECT round(max(h.oldest_xmin_age_seconds)::numeric, 1),
           round(max(h.job_queue_dead_tuple_ratio)::numeric, 3),
           max(h.notification_queue_usage)
      FROM conveyor.v_queue_health AS h
"""


FORGET_SQL: LiteralString = "SELECT conveyor.fn_heartbeat_deregister(component => %s::text)"


@click.command()
@click.option(
    "--forget",
    "forget",
    multiple=True,
    metavar="COMPONENT",
    help="Deregister a component that is gone for good (e.g. a crashed worker), then report.",
)
@click.pass_context
def health(ctx: click.Context, forget: tuple[str, ...]) -> None:
    """v_queue_health as a table; exit 0 only when every component is fresh (a monitor probe)."""
    with connection(ctx, application_name="conveyor-health") as conn:
        if conn.execute("SELECT to_regclass('conveyor.v_queue_health')").fetchone() == (None,):
            err_console.print("Error: v_queue_health does not exist; run `conveyor phase apply 3`")
            raise SystemExit(2)
        for component in forget:
            call(conn, FORGET_SQL, (component,))
            err_console.print(f"forgot {component}")
        cursor = conn.execute(HEALTH_SQL)
        columns = [c.name for c in cursor.description or []]
        rows = cursor.fetchall()
        signals = conn.execute(SIGNALS_SQL).fetchone()
    table = Table(title="queue health")
    for column in columns:
        table.add_column(column.replace("_", " "))
    colour = {"fresh": "green", "late": "yellow", "stale": "red", "never": "red"}
    hint_at = columns.index("status_hint")
    for row in rows:
        cells = ["" if v is None else str(v) for v in row]
        hint = str(row[hint_at])
        cells[hint_at] = f"[{colour.get(hint, 'white')}]{hint}[/{colour.get(hint, 'white')}]"
        table.add_row(*cells)
    console.print(table)
    if signals is not None and rows:
        console.print(
            f"database: oldest transaction/xmin age {signals[0]} s, job_queue dead tuple ratio "
            f"{signals[1]}, notification queue usage {signals[2]}"
        )
    unhealthy = [str(r[0]) for r in rows if r[hint_at] != "fresh"]
    if unhealthy:
        err_console.print(f"not fresh: {', '.join(unhealthy)}")
        raise SystemExit(1)


@click.command()
@click.option("--app", default=None, help="MODULE:REGISTRY with the handlers.")
@click.option(
    "--pilot", is_flag=True, help="Run the MARK/CUT pilot's workers (phase 5) instead of --app."
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes."
)
@click.option("--concurrency", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--queue", "queues", multiple=True, help="Queue to claim from (repeatable).")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Orchestrator tick interval.",
)
@click.pass_context
def up(
    ctx: click.Context,
    app: str | None,
    pilot: bool,
    workers: int,
    concurrency: int,
    queues: tuple[str, ...],
    interval: float,
) -> None:
    """Run an orchestrator and worker processes for a single-machine deployment.

    Workers that exit unexpectedly are restarted (with backoff); SIGTERM/SIGINT drain them all.
    """
    if pilot == (app is not None):
        raise click.UsageError("give either --app MODULE:REGISTRY or --pilot")
    url = db.resolve_url(state(ctx).settings)
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "worker",
        *(PILOT_WORKER_ARGS[1:] if pilot else ("--app", str(app))),
        "--concurrency",
        str(concurrency),
    ]
    for queue in queues:
        command += ["--queue", queue]
    runner = Orchestrator(url, OrchestratorConfig(None, interval, None))
    supervisor = _Supervisor(command, env, workers)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            runner.stop()
            supervisor.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        await asyncio.gather(runner.run(), supervisor.run())

    err_console.print(f"conveyor up: orchestrator {runner.name} + {workers} worker process(es)")
    asyncio.run(main())


class _Supervisor:
    """Keeps N worker processes running; forwards a stop as SIGTERM and waits for the drain."""

    def __init__(self, command: list[str], env: dict[str, str], count: int) -> None:
        self.command = command
        self.env = env
        self.count = count
        self.processes: list[subprocess.Popen[Any] | None] = [None] * count
        self.restarts = [0] * count
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    async def run(self) -> None:
        next_start = [0.0] * self.count
        while not self._stopping.is_set():
            for i, process in enumerate(self.processes):
                if process is not None and process.poll() is None:
                    continue
                if process is not None:
                    err_console.print(f"worker {i} exited with {process.returncode}; restarting")
                    self.restarts[i] += 1
                    next_start[i] = time.monotonic() + min(30.0, 0.5 * 2 ** self.restarts[i])
                    self.processes[i] = None
                if time.monotonic() >= next_start[i]:
                    # own session: a Ctrl-C at the terminal reaches only the supervisor, which
                    # forwards one SIGTERM (a second signal would make a worker exit at once)
                    self.processes[i] = subprocess.Popen(
                        self.command, env=self.env, start_new_session=True
                    )
            await asyncio.sleep(0.5)
        for process in self.processes:
            if process is not None:
                await asyncio.to_thread(process.wait)
