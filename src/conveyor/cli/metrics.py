"""`conveyor metrics`: the console's /metrics on its own, for a scraper next to the workers.

The same figures, read from SQL at each scrape (conveyor.metrics) through the read route
(CONVEYOR_READ_DATABASE_URL when set: a replica will do); without the console's login,
so it listens on loopback unless given TLS or --insecure, like `conveyor web`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from conveyor.cli.context import check_reachable, err_console, state
from conveyor.cli.web import READ_ENV, is_loopback, open_pool


@click.command("metrics")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9187, show_default=True)
@click.option("--certfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--keyfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--insecure", is_flag=True, help="Serve plain HTTP on a non-loopback address (no login here)."
)
@click.pass_context
def metrics_command(
    ctx: click.Context,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    insecure: bool,
) -> None:
    """Serve conveyor's Prometheus metrics at /metrics until SIGTERM or Ctrl-C."""
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("pass both --certfile and --keyfile for TLS, or neither")
    if certfile is None and not insecure and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve metrics over plain HTTP on {host}, which is not a loopback "
            "address: pass --certfile and --keyfile, or --insecure on a trusted network"
        )
    from prometheus_client import CollectorRegistry, start_http_server

    from conveyor.metrics import DatabaseCollector

    url = check_reachable(ctx)
    read_url = state(ctx).settings.read_url
    pool = open_pool(
        read_url or url, READ_ENV if read_url else "the database", "conveyor-metrics", 2
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(pool))
    server, thread = start_http_server(
        port,
        addr=host,
        registry=registry,
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheme = "https" if certfile else "http"
    err_console.print(f"conveyor metrics on {scheme}://{host}:{port}/metrics", markup=False)
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
        pool.close()
