"""`conveyor phase …`: status, plan, ratify, apply, verify, rollback, restore. They connect to
CONVEYOR_DIRECT_DATABASE_URL when set: the runner's session advisory lock needs a session of its
own, which a transaction pooler does not keep."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from conveyor.cli.context import connection, console
from conveyor.errors import GateFailed
from conveyor.phases import runner
from conveyor.phases.runner import GateResult, PhaseStatus


@click.group()
def phase() -> None:
    """Phase governance: plan, ratify, apply, verify and roll back migrations."""


def _when(status: PhaseStatus) -> str:
    if status.ratified_at is None:
        return "—"
    return f"{status.ratified_by} @ {status.ratified_at:%Y-%m-%d %H:%M}"


def _gate_text(status: PhaseStatus) -> str:
    if status.gate_passed is None:
        return "—"
    mark = "[green]passed[/green]" if status.gate_passed else "[red]failed[/red]"
    return f"{mark} {status.gate_at:%Y-%m-%d %H:%M}" if status.gate_at else mark


def status_table(statuses: list[PhaseStatus]) -> Table:
    """The `phase status` table."""
    table = Table(title="conveyor phases")
    for column in ("phase", "applied", "ratified", "gate (last)", "flags"):
        table.add_column(column)
    for status in statuses:
        applied = {
            "applied": "[green]yes[/green]",
            "ddl_applied": "[yellow]DDL only[/yellow]",
            "not implemented": "[dim]not implemented[/dim]",
        }.get(status.state, "no")
        if status.changed_files:
            applied += f" [red](changed: {', '.join(status.changed_files)})[/red]"
        flags = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(status.flags.items()))
        table.add_row(
            f"{status.phase.number} {status.phase.title}",
            applied,
            _when(status),
            _gate_text(status),
            escape(flags) or "—",
        )
    return table


def gate_table(result: GateResult) -> Table:
    """One row per gate item."""
    table = Table(title=f"phase {result.phase} gate")
    table.add_column("check")
    table.add_column("passed")
    table.add_column("detail")
    for item in result.items:
        mark = "[green]✔[/green]" if item.passed else "[red]✘[/red]"
        table.add_row(escape(item.item), mark, escape(item.detail))
    return table


@phase.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show every phase: applied?, ratified by/when, last gate result, flags."""
    with connection(ctx, route="direct") as conn:
        console.print(status_table(runner.status(conn)))


@phase.command()
@click.argument("number", type=int)
@click.option("--sql/--no-sql", "show_sql", default=True, help="Print the SQL that would run.")
@click.pass_context
def plan(ctx: click.Context, number: int, show_sql: bool) -> None:
    """Dry run: apply NUMBER inside a transaction, run its gate, roll back."""
    with connection(ctx, route="direct") as conn:
        result = runner.plan(conn, number)
    if show_sql:
        for name, text in result.files.items():
            console.rule(f"{name}.sql")
            console.print(Syntax(text, "sql", line_numbers=False, word_wrap=True))
    console.rule(f"phase {number} would create {len(result.objects)} objects")
    for kind, name in result.objects:
        console.print(f"  {kind:9} {name}")
    console.print(gate_table(result.gate))
    console.print("[dim]dry run: everything was rolled back[/dim]")
    if not result.gate.passed:
        raise GateFailed(number, result.gate.failures)


@phase.command()
@click.argument("number", type=int)
@click.option("--by", required=True, help="Who ratifies (recorded).")
@click.option("--note", default=None, help="Why, or a reference to the review.")
@click.pass_context
def ratify(ctx: click.Context, number: int, by: str, note: str | None) -> None:
    """Record that BY approved applying phase NUMBER."""
    with connection(ctx, route="direct") as conn:
        runner.ratify(conn, number, by, note)
    console.print(f"phase {number} ratified by {by}")


@phase.command()
@click.argument("number", type=int)
@click.option("--by", default=None, help="Who applies (default: the OS user).")
@click.pass_context
def apply(ctx: click.Context, number: int, by: str | None) -> None:
    """Apply phase NUMBER (needs ratification and its dependencies), then run its gate."""
    with connection(ctx, route="direct") as conn:
        result = runner.apply(conn, number, by)
    if result.already_applied:
        console.print(f"phase {number} is already applied; nothing to do")
        return
    console.print(
        f"phase {number} applied ({', '.join(result.files)}; {len(result.objects)} objects)"
    )
    if result.gate is not None:
        console.print(gate_table(result.gate))
        if not result.gate.passed:
            raise GateFailed(number, result.gate.failures)


@phase.command()
@click.argument("number", type=int)
@click.pass_context
def verify(ctx: click.Context, number: int) -> None:
    """Run phase NUMBER's verification gate; exit 1 listing failed checks."""
    with connection(ctx, route="direct") as conn:
        result = runner.verify(conn, number)
    console.print(gate_table(result))
    if not result.passed:
        raise GateFailed(number, result.failures)


@phase.command()
@click.argument("number", type=int)
@click.option("--by", default=None, help="Who rolls back (default: the OS user).")
@click.option(
    "--archive",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write rows the rollback would drop to this psql script first.",
)
@click.pass_context
def rollback(ctx: click.Context, number: int, by: str | None, archive: Path | None) -> None:
    """Roll phase NUMBER back (reverse dependency order only)."""
    with connection(ctx, route="direct") as conn:
        result = runner.rollback(conn, number, by, archive)
    if result.archive_path is not None:
        rows = sum(result.archived.values())
        console.print(f"archived {rows} rows of {len(result.archived)} tables to {archive}")
    console.print(f"phase {number} rolled back")


@phase.command()
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_context
def restore(ctx: click.Context, archive: Path) -> None:
    """Load rows archived by `rollback --archive` back into re-applied tables."""
    with connection(ctx, route="direct") as conn:
        restored = runner.restore(conn, archive)
    for table, rows in restored.items():
        console.print(f"restored {rows} rows into {table}")
