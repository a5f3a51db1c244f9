"""What every command shares: settings from the global options, a connection, the console."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from rich.console import Console

from conveyor import db
from conveyor.settings import Settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass(frozen=True, slots=True)
class CliState:
    """The global options, resolved."""

    settings: Settings


def state(ctx: click.Context) -> CliState:
    """The CliState stored on the root context by `conveyor`."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState(Settings.from_env())
    return root.obj


@contextmanager
def connection(
    ctx: click.Context, *, autocommit: bool = True, application_name: str = "conveyor-cli"
) -> Iterator[psycopg.Connection[Any]]:
    """Open a connection for a command and close it afterwards."""
    settings = state(ctx).settings
    if settings.embedded:
        err_console.print("[dim]no CONVEYOR_DATABASE_URL set: using the embedded PostgreSQL[/dim]")
    conn = db.connect(settings=settings, autocommit=autocommit, application_name=application_name)
    try:
        yield conn
    finally:
        conn.close()
