"""`conveyor` entry point: global options, error handling, and the command groups."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click
import psycopg
from rich.markup import escape

from conveyor.cli.context import CliState, err_console
from conveyor.errors import ConveyorError
from conveyor.settings import Settings


@click.group()
@click.version_option(package_name="conveyor", message="conveyor %(version)s")
@click.option(
    "--database-url",
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
    from conveyor.cli import (
        channel,
        config,
        database,
        demo,
        health,
        jobs,
        messages,
        metrics,
        operations,
        outbound,
        phase,
        queue,
        report,
        staging,
        web,
        worker,
        workflow,
    )

    cli.add_command(phase.phase)
    cli.add_command(config.config)
    cli.add_command(database.db_group)
    cli.add_command(worker.worker)
    cli.add_command(jobs.enqueue)
    cli.add_command(jobs.dlq)
    cli.add_command(operations.tick_command)
    cli.add_command(operations.orchestrator)
    cli.add_command(health.health)
    cli.add_command(operations.up)
    cli.add_command(report.report)
    cli.add_command(demo.demo)
    cli.add_command(outbound.outbound)
    cli.add_command(staging.staging)
    cli.add_command(web.web)
    cli.add_command(metrics.metrics_command)
    cli.add_command(workflow.workflow_group)
    cli.add_command(channel.channel_group)
    cli.add_command(messages.messages)
    cli.add_command(queue.queue)


_register()

# SQL hints speak SQL ("pass NULL for the default"); on a command line that means leaving the
# option out.
_PASS_NULL = re.compile(r"\b([Pp])ass NULL\b")


def cli_text(message: str) -> str:
    """*message* worded for a command line."""
    return _PASS_NULL.sub(
        lambda m: ("L" if m.group(1) == "P" else "l") + "eave the option out", message
    )


def print_error(message: str) -> None:
    """`Error: <message>` on stderr, the message printed literally (never read as markup)."""
    err_console.print(f"[red]Error:[/red] {escape(cli_text(message))}", soft_wrap=True)


# Errors that say something about the deployment, not a bug in conveyor: one line, no traceback.
_ENVIRONMENT_ERRORS = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
)


def main() -> None:
    """Run the CLI; expected errors print one line and exit 1, bugs show a traceback."""
    try:
        code = cli.main(prog_name="conveyor", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except ConveyorError as error:
        print_error(str(error))
        sys.exit(1)
    except psycopg.OperationalError as error:  # the server went away mid-command
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print_error(f"lost the database connection: {lines[0]}; check that the server is up")
        sys.exit(1)
    except _ENVIRONMENT_ERRORS as error:  # the role, a timeout or a read-only server said no
        print_error(f"the database refused: {error.diag.message_primary or error}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int):
        sys.exit(code)
