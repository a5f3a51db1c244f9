"""`conveyor outbound`: run the platform's outbound worker (iu_outbound_default by default)."""

from __future__ import annotations

import json
import threading

import click

from conveyor import outbound as outbound_worker
from conveyor.cli.context import connection, console
from conveyor.types import JsonObject


@click.command()
@click.option("--name", default="iu_outbound_default", show_default=True, help="Outbound worker.")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between ticks."
)
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.pass_context
def outbound(ctx: click.Context, name: str, interval: float, once: bool) -> None:
    """Deliver outbox events to the worker's sink (a table, or this process's log)."""
    if interval <= 0:
        raise click.BadParameter("must be > 0 seconds", param_hint="--interval")

    def show(events: list[JsonObject]) -> None:
        for event in events:
            console.print(json.dumps(event, default=str))

    stop = threading.Event()
    with connection(ctx, application_name=f"conveyor-outbound:{name}", needs_phase=0) as conn:
        try:
            ticks = outbound_worker.run(
                conn, name, interval=interval, once=once, stop=stop, on_events=show
            )
        except KeyboardInterrupt:
            stop.set()
            ticks = 0
    if once:
        console.print(f"outbound worker {name}: {ticks} tick(s) run")
