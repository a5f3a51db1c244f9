"""What every command shares: settings from the global options, a connection, the console,
and the check that the phase a command needs is applied."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from rich.console import Console

from conveyor import db, tick
from conveyor.errors import ConfigError
from conveyor.phases import catalog
from conveyor.settings import Settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def resolve_url(ctx: click.Context) -> str:
    """The URL of the database, starting the embedded server if none is configured."""
    settings = state(ctx).settings
    if settings.embedded:
        err_console.print("[dim]no CONVEYOR_DATABASE_URL set: using the embedded PostgreSQL[/dim]")
    return db.resolve_url(settings)


@contextmanager
def connection(
    ctx: click.Context,
    *,
    autocommit: bool = True,
    application_name: str = "conveyor-cli",
    needs_phase: int | None = None,
    route: db.Route = "default",
) -> Iterator[psycopg.Connection[Any]]:
    """Open a connection for a command and close it afterwards.

    With *needs_phase*, refuse with a ConfigError naming the command and the phase to apply
    when that phase (or one it depends on) is not applied. *route* as in `db.connect`.
    """
    settings = state(ctx).settings
    if settings.embedded:
        err_console.print("[dim]no CONVEYOR_DATABASE_URL set: using the embedded PostgreSQL[/dim]")
    conn = db.connect(
        settings=settings, autocommit=autocommit, application_name=application_name, route=route
    )
    try:
        if needs_phase is not None:
            require_phase(conn, command_name(ctx), needs_phase)
        yield conn
    finally:
        conn.close()


def check_reachable(ctx: click.Context, *needs_phases: int) -> str:
    """Fail fast (ConfigError) when the database cannot be reached or lacks a phase; its URL.

    For long-running commands (worker, orchestrator, up) that would otherwise retry forever.
    """
    url = resolve_url(ctx)
    settings = state(ctx).settings
    with db.connect(settings=settings, autocommit=True, application_name="conveyor-cli") as conn:
        for number in needs_phases:
            require_phase(conn, command_name(ctx), number)
    return url


def command_name(ctx: click.Context) -> str:
    """The command as typed after `conveyor` (e.g. "dlq replay")."""
    names: list[str] = []
    current: click.Context | None = ctx
    while current is not None and current.parent is not None:
        names.append(current.info_name or "")
        current = current.parent
    return " ".join(reversed(names))


def applied_phases(conn: psycopg.Connection[Any]) -> set[int]:
    """The applied phases, read from the ledger without creating it (none on a new database)."""
    row = conn.execute("SELECT to_regclass('conveyor_meta.phase_state')").fetchone()
    if row is None or row[0] is None:
        return set()
    applied = conn.execute(tick.APPLIED_SQL).fetchone()
    return set(applied[0]) if applied else set()


def _with_dependencies(number: int) -> list[int]:
    needed = {number}
    pending = [number]
    while pending:
        for dependency in catalog.get(pending.pop()).depends_on:
            if dependency not in needed:
                needed.add(dependency)
                pending.append(dependency)
    return sorted(needed)


def require_phase(conn: psycopg.Connection[Any], command: str, number: int) -> None:
    """Raise ConfigError unless phase *number* and the phases it depends on are applied."""
    applied = applied_phases(conn)
    missing = [n for n in _with_dependencies(number) if n not in applied]
    if not missing:
        return
    title = catalog.get(number).title
    first = missing[0]
    run = f"`conveyor phase ratify {first} --by NAME` and `conveyor phase apply {first}`"
    if first == number:
        raise ConfigError(
            f"`{command}` needs phase {number} ({title}), which is not applied: run {run}"
        )
    earlier = [n for n in missing if n != number]
    nor = f"nor is phase {first}" if len(earlier) == 1 else f"nor are phases {_listed(earlier)}"
    raise ConfigError(
        f"`{command}` needs phase {number} and the phases it builds on: phase {number} ({title}) "
        f"is not applied, {nor}; apply them in order, starting with {run}"
    )


def _listed(numbers: list[int]) -> str:
    """Phase numbers as text: [0, 1, 2] → "0, 1 and 2"."""
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
