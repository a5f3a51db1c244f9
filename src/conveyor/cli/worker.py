"""`conveyor worker`: run handlers from an app's registry."""

from __future__ import annotations

import os
import sys

import click

from conveyor import handlers
from conveyor.cli.context import check_reachable, err_console
from conveyor.worker import Worker, WorkerConfig


def load_app(spec: str) -> handlers.Registry:
    """Import the --app registry with the current directory on the import path (as `python -m`
    and other Python runners do), so `--app myapp.jobs:registry` works from myapp's parent."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    return handlers.load(spec)


@click.command()
@click.option("--app", "app", required=True, help="MODULE:REGISTRY holding the handlers.")
@click.option(
    "--queue", "queues", multiple=True, help="Queue to claim from (repeatable; default 'default')."
)
@click.option("--concurrency", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--batch", type=click.IntRange(min=1), default=None, help="Claim batch (default: free slots)."
)
@click.option(
    "--lease-seconds",
    type=click.IntRange(min=1),
    default=None,
    help="Lease length (default: the database's queue.lease.default_seconds).",
)
@click.option("--poll-interval", type=click.FloatRange(0.01, 60), default=0.5, show_default=True)
@click.option("--grace-period", type=click.FloatRange(0, 3600), default=30.0, show_default=True)
@click.option("--summary-every", type=click.FloatRange(1, 86400), default=60.0, show_default=True)
@click.option("--name", default=None, help="Worker name (default host:pid:random).")
@click.option(
    "--executor",
    default=None,
    help="Executor (phase 4): claim only the kinds it is subscribed to in job_subscription.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    app: str,
    queues: tuple[str, ...],
    concurrency: int,
    batch: int | None,
    lease_seconds: int | None,
    poll_interval: float,
    grace_period: float,
    summary_every: float,
    name: str | None,
    executor: str | None,
) -> None:
    """Claim and run jobs until SIGTERM/SIGINT (drains; a second signal exits at once)."""
    registry = load_app(app)
    config = WorkerConfig(
        name=name,
        queues=queues or None,
        concurrency=concurrency,
        batch=batch,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        grace_period=grace_period,
        summary_every=summary_every,
        executor=executor,
    )
    # fail fast at start; once running, the worker rides out a lost server with capped backoff
    url = check_reachable(ctx)
    runner = Worker(registry, url, config)
    err_console.print(
        f"worker {runner.name}: kinds {', '.join(registry.kinds)}; queues "
        f"{', '.join(queues) or 'default'}; concurrency {concurrency}"
    )
    stats = runner.run_forever()
    err_console.print(f"worker {runner.name} stopped: {stats}")
