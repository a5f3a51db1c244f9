"""`conveyor staging mark|approve|list|show`: the operator's side of the MARK/CUT pilot (phase 5).

The operator marks and approves; CUT, VERIFY_CUT and CLEANUP then run by themselves (see
conveyor.pilot). These commands only call the SQL functions and read v_iu_staging_record.
"""

from __future__ import annotations

import getpass
from datetime import datetime

import click
import psycopg
from rich.table import Table

from conveyor import pilot
from conveyor.cli.context import connection, console, err_console
from conveyor.errors import ConveyorError

STATUSES = ("marked", "approved", "cut", "verified", "cleaned")


def _default_actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (e.g. in a container)
        return "operator"


def _when(at: datetime | None) -> str:
    return "" if at is None else at.isoformat(sep=" ", timespec="seconds")


@click.group()
def staging() -> None:
    """Stage records for the MARK/CUT pilot and follow them (phase 5)."""


@staging.command()
@click.argument("collection")
@click.argument("key")
@click.option("--payload", required=True, help="The record's content (text) that CUT writes.")
@click.option("--content-ref", default=None, help="A reference to the content (URI, object key).")
@click.option("--actor", default=None, help="Who marks (default operator:<login name>).")
@click.pass_context
def mark(
    ctx: click.Context,
    collection: str,
    key: str,
    payload: str,
    content_ref: str | None,
    actor: str | None,
) -> None:
    """MARK: stage KEY in COLLECTION with its payload (fn_pilot_mark)."""
    with connection(ctx, application_name="conveyor-staging", needs_phase=5) as conn:
        try:
            record_id = pilot.mark(
                conn, collection, key, payload, actor or _default_actor(), content_ref
            )
        except psycopg.errors.UniqueViolation as error:  # the key is already staged
            diag = error.diag
            raise ConveyorError(f"{diag.message_primary} (hint: {diag.message_hint})") from error
    console.print(
        f"marked record {record_id}: {collection}/{key}; approve it with "
        f"`conveyor staging approve {record_id}`"
    )


@staging.command()
@click.argument("record_id", type=int)
@click.option("--actor", default=None, help="Who approves (default operator:<login name>).")
@click.pass_context
def approve(ctx: click.Context, record_id: int, actor: str | None) -> None:
    """APPROVE record RECORD_ID; the pilot cuts, verifies and cleans it up by itself."""
    with connection(ctx, application_name="conveyor-staging", needs_phase=5) as conn:
        answer = pilot.approve(conn, record_id, actor or _default_actor())
    if answer.get("already"):
        console.print(f"record {record_id} was already approved (status {answer['status']})")
    else:
        console.print(
            f"approved record {record_id}; follow it with `conveyor staging show {record_id}`"
        )


@staging.command("list")
@click.option("--collection", default=None, help="Only this collection.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.pass_context
def list_command(
    ctx: click.Context, collection: str | None, status: str | None, limit: int
) -> None:
    """Staged records with their status, next step and how long they have waited."""
    with connection(ctx, application_name="conveyor-staging", needs_phase=5) as conn:
        rows = pilot.records(conn, collection, status, limit)
    table = Table(title="staging records")
    for column in ("id", "collection", "pilot", "key", "status", "next", "waiting s", "job"):
        table.add_column(column)
    for r in rows:
        waiting = "" if r.waiting_seconds is None else f"{r.waiting_seconds:.1f}"
        table.add_row(
            str(r.id),
            r.collection,
            "yes" if r.pilot else "",
            r.record_key,
            f"[red]{r.status} (stuck)[/red]" if r.stuck else r.status,
            r.next_op or "",
            waiting,
            "" if r.step_job_id is None else f"{r.step_job_id} {r.step_job_status}",
        )
    console.print(table)
    if not rows:
        err_console.print("no staging records match")


@staging.command()
@click.argument("record_id", type=int)
@click.pass_context
def show(ctx: click.Context, record_id: int) -> None:
    """One record: its steps (who, when) and the jobs that carried them."""
    with connection(ctx, application_name="conveyor-staging", needs_phase=5) as conn:
        found = pilot.record(conn, record_id)
        if found is None:
            raise ConveyorError(
                f"there is no staging record {record_id}; see `conveyor staging list`"
            )
        carried = pilot.step_jobs(conn, record_id)
    console.print(
        f"record {found.id}: {found.collection}/{found.record_key}, status {found.status}"
        + (" [red](stuck)[/red]" if found.stuck else "")
        + ("" if found.payload_bytes is None else f", payload {found.payload_bytes} bytes")
    )
    steps = Table(title="steps")
    for column in ("step", "by", "at"):
        steps.add_column(column)
    for step, by, at in found.steps:
        steps.add_row(step, by or "", _when(at))
    console.print(steps)
    jobs = Table(title="jobs")
    for column in ("job", "kind", "status", "attempts", "worker", "finished", "error"):
        jobs.add_column(column)
    for job in carried:
        jobs.add_row(
            str(job.job_id),
            job.kind,
            job.status,
            str(job.attempts),
            job.worker or "",
            _when(job.finished_at),
            (job.error or "")[:120],
        )
    console.print(jobs)
