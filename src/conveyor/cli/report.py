"""`conveyor report`: per phase, the tables, functions and views installed, with row counts."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import connection, console
from conveyor.phases import catalog, runner
from conveyor.phases.report import summary
from conveyor.phases.runner import ReportObject


def report_tables(objects: dict[int, list[ReportObject]]) -> list[Table]:
    """One table per phase with its objects; counts by kind in the title."""
    tables: list[Table] = []
    for number, items in sorted(objects.items()):
        table = Table(title=f"phase {number} {catalog.get(number).title}: {summary(items)}")
        table.add_column("kind")
        table.add_column("name")
        table.add_column("rows", justify="right")
        for item in items:
            if item.kind in {"index", "sequence"}:
                continue
            rows = "" if item.rows is None else f"{item.rows:,}"
            table.add_row(item.kind, escape(item.name), rows)
        tables.append(table)
    return tables


@click.command()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Per phase: the tables, functions and views installed, with counts and row counts."""
    with connection(ctx) as conn:
        objects = runner.report(conn)
    if not objects:
        console.print("no phase is applied; start with `conveyor phase plan 0`")
        return
    for table in report_tables(objects):
        console.print(table)
