"""`conveyor` entry point: global options, error handling, and the command groups."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from conveyor.cli.context import CliState, err_console
from conveyor.errors import ConveyorError, GateFailed
from conveyor.settings import Settings


@click.group()
@click.option(
    "--database-url",
    envvar="CONVEYOR_DATABASE_URL",
    default=None,
    help="PostgreSQL URL (default: $CONVEYOR_DATABASE_URL, $DATABASE_URL, else embedded).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Data directory of the embedded PostgreSQL (when no URL is set).",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, data_dir: Path | None, verbose: int) -> None:
    """conveyor: a job substrate that lives inside PostgreSQL."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(Settings.from_env(database_url=database_url, data_dir=data_dir))


def _register() -> None:
    from conveyor.cli import demo, jobs, operations, outbound, phase, report, worker, workflow

    cli.add_command(phase.phase)
    cli.add_command(worker.worker)
    cli.add_command(jobs.enqueue)
    cli.add_command(jobs.dlq)
    cli.add_command(operations.tick_command)
    cli.add_command(operations.orchestrator)
    cli.add_command(operations.health)
    cli.add_command(operations.up)
    cli.add_command(report.report)
    cli.add_command(demo.demo)
    cli.add_command(outbound.outbound)
    cli.add_command(workflow.workflow_group)


_register()


def main() -> None:
    """Run the CLI; expected errors print one line and exit 1, bugs show a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except GateFailed as error:
        err_console.print(f"[red]Error:[/red] {error}")
        sys.exit(1)
    except ConveyorError as error:
        err_console.print(f"[red]Error:[/red] {error}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int):
        sys.exit(code)
