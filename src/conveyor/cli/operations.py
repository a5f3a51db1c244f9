"""`conveyor tick`, `conveyor orchestrator` and `conveyor up`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from conveyor import tick
from conveyor.cli.context import applied_phases, check_reachable, connection, console, err_console
from conveyor.cli.worker import load_app
from conveyor.errors import ConfigError
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
            escape(result.detail),
            f"{result.seconds * 1000:.1f}",
        )
    return table


@click.command("tick")
@click.pass_context
def tick_command(ctx: click.Context) -> None:
    """Run one tick round (for host cron): reaper, stale check, outbound, retention, periodic."""
    with connection(ctx, application_name="conveyor-tick", needs_phase=0) as conn:
        results = tick.run(conn, applied_phases(conn))
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
    # fail fast at start; once running, it rides out a lost server with capped backoff
    url = check_reachable(ctx, 3)
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

    Workers that exit unexpectedly are restarted with backoff; after 5 exits in a row within
    10 s of starting, `up` stops and says so. SIGTERM/SIGINT drain them all.
    """
    if pilot == (app is not None):
        raise click.UsageError("give either --app MODULE:REGISTRY or --pilot")
    if app is not None:
        load_app(app)  # a wrong --app fails here, once, not in every restarted worker
    url = check_reachable(ctx, 2, 3, *((5,) if pilot else ()))
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
    supervisor = _Supervisor(command, env, workers, on_give_up=runner.stop)

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
    if supervisor.gave_up is not None:
        raise ConfigError(supervisor.gave_up)


class _Supervisor:
    """Keeps N worker processes running; forwards a stop as SIGTERM and waits for the drain.

    A worker that exits is restarted after a backoff (0.5 s doubling to 30 s); after
    QUICK_FAILURES exits in a row each within QUICK_SECONDS of its start, the supervisor stops
    everything and gives up, saying so (the worker's own error is on stderr above it).
    """

    QUICK_SECONDS = 10.0
    QUICK_FAILURES = 5

    def __init__(
        self, command: list[str], env: dict[str, str], count: int, on_give_up: Any = None
    ) -> None:
        self.command = command
        self.env = env
        self.count = count
        self.processes: list[subprocess.Popen[Any] | None] = [None] * count
        self.started = [0.0] * count
        self.restarts = [0] * count
        self.quick_failures = [0] * count
        self.gave_up: str | None = None
        self.on_give_up = on_give_up
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _exited(self, i: int, process: subprocess.Popen[Any]) -> float:
        """Record worker *i*'s exit; return when to start it again."""
        now = time.monotonic()
        quick = now - self.started[i] < self.QUICK_SECONDS
        self.quick_failures[i] = self.quick_failures[i] + 1 if quick else 0
        self.restarts[i] = self.restarts[i] + 1 if quick else 1
        if self.quick_failures[i] >= self.QUICK_FAILURES:
            self.gave_up = (
                f"worker {i} exited {self.quick_failures[i]} times in a row within "
                f"{self.QUICK_SECONDS:.0f} s of starting (last exit code {process.returncode}); "
                "gave up: its error is above, or run `conveyor worker --app …` alone to see it"
            )
            return now
        delay: float = min(30.0, 0.5 * 2.0 ** (self.restarts[i] - 1))
        err_console.print(
            f"worker {i} exited with {process.returncode}; restarting in {delay:.1f} s"
        )
        return now + delay

    async def run(self) -> None:
        next_start = [0.0] * self.count
        while not self._stopping.is_set():
            for i, process in enumerate(self.processes):
                if process is not None and process.poll() is None:
                    continue
                if process is not None:
                    next_start[i] = self._exited(i, process)
                    self.processes[i] = None
                    if self.gave_up is not None:
                        self.stop()
                        if self.on_give_up is not None:
                            self.on_give_up()
                        break
                if time.monotonic() >= next_start[i]:
                    # own session: a Ctrl-C at the terminal reaches only the supervisor, which
                    # forwards one SIGTERM (a second signal would make a worker exit at once)
                    self.started[i] = time.monotonic()
                    self.processes[i] = subprocess.Popen(
                        self.command, env=self.env, start_new_session=True
                    )
            await asyncio.sleep(0.5)
        for process in self.processes:
            if process is not None:
                await asyncio.to_thread(process.wait)
