"""`conveyor queue limit|show`: a queue's limits (phase 8). The rules (ranges, defaults, what a
limit does) are fn_job_queue_limit's and fn_job_key_limit's; this module merges the options given
with the limits stored, since each SQL call sets every limit it takes, and renders v_job_limits."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, LiteralString, NamedTuple

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from conveyor.calls import call
from conveyor.cli.context import connection, console
from conveyor.errors import InvalidInput

# Every write to a queue's limits from here takes this lock first: the stored row is read, merged
# and written back in one transaction, and a row that does not exist yet cannot be locked FOR
# UPDATE, so two first settings of a queue at once would otherwise lose one of them.
_LOCK: LiteralString = (
    "SELECT pg_advisory_xact_lock(hashtextextended('conveyor.job_queue_limit ' || %s::text, 0))"
)
_QUEUE_ROW: LiteralString = """
    SELECT l.max_in_progress, l.rate, l.per_seconds, l.key_max_in_progress
      FROM conveyor.job_queue_limit AS l
     WHERE l.queue = %s
       FOR UPDATE
"""
_KEY_ROW: LiteralString = """
    SELECT kl.max_in_progress, kl.rate, kl.per_seconds
      FROM conveyor.job_key_limit AS kl
     WHERE kl.queue = %s AND kl.concurrency_key = %s
       FOR UPDATE
"""
_QUEUE_LIMIT: LiteralString = """
    SELECT conveyor.fn_job_queue_limit(queue => %s::text, max_in_progress => %s::integer,
                                       rate => %s::integer, per_seconds => %s::numeric)
"""
_KEY_LIMIT: LiteralString = """
    SELECT conveyor.fn_job_key_limit(queue => %s::text, concurrency_key => %s::text,
                                     max_in_progress => %s::integer, rate => %s::integer,
                                     per_seconds => %s::numeric)
"""


def _integer(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """An int the database's integer type holds; the limits' own ranges are the SQL functions'."""
    if value is not None and not -(2**31) <= value < 2**31:
        raise click.BadParameter(f"{value} is out of range", ctx, param)
    return value


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    """--per as an exact number (numeric in the database), as the user typed it."""
    if value is None:
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise click.BadParameter(
            f"{value!r} is not a number of seconds (e.g. 1, 0.5, 3600)", ctx, param
        ) from None


class Limits(NamedTuple):
    """A cap and a rate, as stored (None: no such limit)."""

    max_in_progress: int | None
    rate: int | None
    per_seconds: Decimal | None


class Change(NamedTuple):
    """The limit options given on the command line (None / False: not given)."""

    max_in_progress: int | None
    clear_max: bool
    rate: int | None
    per: Decimal | None
    clear_rate: bool


def merged(stored: Limits, change: Change) -> Limits:
    """*stored* with only the options given changed.

    A --rate alone keeps the stored period (none stored: the database's default); a --per alone
    keeps the stored rate (none stored: the database refuses, naming --per).
    """
    cap = stored.max_in_progress if change.max_in_progress is None else change.max_in_progress
    if change.clear_max:
        cap = None
    if change.clear_rate:
        return Limits(cap, None, None)
    rate = stored.rate if change.rate is None else change.rate
    return Limits(cap, rate, stored.per_seconds if change.per is None else change.per)


# SQL argument → the option that sets it, for the database's messages about bad values.
_OPTIONS = {
    "max_in_progress": "--max-in-progress",
    "per_seconds": "--per",
    "rate": "--rate",
    "concurrency_key": "--key",
}
_ARGUMENT = re.compile(r"\b(" + "|".join(_OPTIONS) + r")\b")
# The hint for a message about an option (first match wins); SQL's own hints speak SQL.
_HINTS = (
    ("--per needs a --rate", "give --rate N with --per S for N jobs per S seconds"),
    ("--rate needs a --key", "name the key with --key; --default-key sets only --max-in-progress"),
    ("--max-in-progress is", "--no-max-in-progress clears the cap"),
    ("--rate is", "--no-rate clears the rate"),
    ("--per is", "e.g. --rate 100 --per 1, or --rate 1000 --per 3600"),
    ("--key must", "give the key jobs are enqueued with (`conveyor enqueue --concurrency-key`)"),
)


def cli_message(error: InvalidInput) -> str:
    """The database's complaint about a value, naming the CLI option instead of the argument."""
    cause = error.__cause__
    if not isinstance(cause, psycopg.Error) or not cause.diag.message_primary:
        return str(error)
    primary = re.sub(r"^fn_\w+: ", "", cause.diag.message_primary)
    primary = _ARGUMENT.sub(lambda m: _OPTIONS[m.group(1)], primary)
    hint = next((h for start, h in _HINTS if start in primary), cause.diag.message_hint)
    return f"{primary} ({hint})" if hint else primary


def _either(ctx: click.Context, first: tuple[str, bool], second: tuple[str, bool]) -> None:
    if first[1] and second[1]:
        raise click.UsageError(f"give {first[0]} or {second[0]}, not both", ctx=ctx)


@click.group()
def queue() -> None:
    """A queue's limits (phase 8): set them, show them."""


@queue.command("limit")
@click.argument("queue_name", metavar="QUEUE")
@click.option("--key", metavar="KEY", help="Set the limits of this concurrency key of QUEUE.")
@click.option(
    "--default-key",
    is_flag=True,
    help="Set the cap of every key of QUEUE without limits of its own.",
)
@click.option(
    "--max-in-progress", type=int, callback=_integer, metavar="N", help="Cap on jobs in progress."
)
@click.option("--no-max-in-progress", is_flag=True, help="Clear the cap.")
@click.option(
    "--rate", type=int, callback=_integer, metavar="N", help="Claims allowed per --per seconds."
)
@click.option(
    "--per",
    default=None,
    callback=_seconds,
    metavar="SECONDS",
    help="Period of --rate (the stored one, else the database's default of 1 s).",
)
@click.option("--no-rate", is_flag=True, help="Clear the rate.")
@click.pass_context
def queue_limit(
    ctx: click.Context,
    queue_name: str,
    key: str | None,
    default_key: bool,
    max_in_progress: int | None,
    no_max_in_progress: bool,
    rate: int | None,
    per: Decimal | None,
    no_rate: bool,
) -> None:
    """Set QUEUE's limits (or a key's); the limits you leave out stay as they are."""
    _either(ctx, ("--key", key is not None), ("--default-key", default_key))
    _either(
        ctx,
        ("--max-in-progress", max_in_progress is not None),
        ("--no-max-in-progress", no_max_in_progress),
    )
    _either(ctx, ("--rate or --per", rate is not None or per is not None), ("--no-rate", no_rate))
    given = (max_in_progress, rate, per)
    if all(value is None for value in given) and not (no_max_in_progress or no_rate):
        raise click.UsageError(
            "give a limit to change: --max-in-progress N, --rate N [--per SECONDS], "
            "--no-max-in-progress or --no-rate (`conveyor queue show` lists the limits)",
            ctx=ctx,
        )
    change = Change(max_in_progress, no_max_in_progress, rate, per, no_rate)
    with connection(ctx, needs_phase=8) as conn:
        try:
            answer = _write(conn, queue_name, key, default_key, change)
        except InvalidInput as error:
            raise InvalidInput(cli_message(error)) from error
    console.print(_describe(queue_name, key, default_key, answer), markup=False)


def _write(
    conn: psycopg.Connection[Any],
    queue_name: str,
    key: str | None,
    default_key: bool,
    change: Change,
) -> dict[str, Any]:
    """Read the stored limits, merge *change* into them and write them back, in one transaction."""
    with conn.transaction():
        conn.execute(_LOCK, (queue_name,))
        queue_row = conn.execute(_QUEUE_ROW, (queue_name,)).fetchone()
        if default_key:
            stored = Limits(queue_row[3] if queue_row else None, None, None)
            return call(conn, _KEY_LIMIT, (queue_name, None, *merged(stored, change)))
        if key is not None:
            key_row = conn.execute(_KEY_ROW, (queue_name, key)).fetchone()
            stored = Limits(*key_row) if key_row else Limits(None, None, None)
            return call(conn, _KEY_LIMIT, (queue_name, key, *merged(stored, change)))
        stored = Limits(*queue_row[:3]) if queue_row else Limits(None, None, None)
        return call(conn, _QUEUE_LIMIT, (queue_name, *merged(stored, change)))


def _rate(rate: int | None, per_seconds: Decimal | None) -> str:
    if rate is None:
        return "no rate"
    per = Decimal(per_seconds if per_seconds is not None else 1).normalize()
    return f"{rate} per {per:f} s"


def _cap(cap: int | None, *, of_its_own: bool = False) -> str:
    if cap is None:
        return "no cap of its own" if of_its_own else "no cap"
    return f"at most {cap} in progress"


def _describe(queue_name: str, key: str | None, default_key: bool, answer: dict[str, Any]) -> str:
    cap = answer.get("max_in_progress")
    if default_key:
        return f"queue {queue_name}, every key without limits of its own: {_cap(cap)}"
    if answer.get("limited") is False:
        return f"queue {queue_name}: no limits left; its claims take the unlimited path"
    target = f"queue {queue_name}" + (f", key {key}" if key is not None else "")
    per = answer.get("per_seconds")
    rate = _rate(answer.get("rate"), None if per is None else Decimal(str(per)))
    return f"{target}: {_cap(cap, of_its_own=key is not None)}, {rate}"


_SHOW: LiteralString = """
    SELECT l.queue, l.concurrency_key, l.max_in_progress, l.key_max_in_progress, l.in_progress,
           l.rate, l.per_seconds, l.tokens_now, l.claims_per_second,
           CASE WHEN l.concurrency_key IS NULL THEN
               (SELECT sum(b.ready_count) FROM conveyor.v_job_queue_backlog AS b
                 WHERE b.queue = l.queue)
           END AS ready,
           CASE WHEN l.concurrency_key IS NULL THEN
               (SELECT sum(b.scheduled_count) FROM conveyor.v_job_queue_backlog AS b
                 WHERE b.queue = l.queue)
           END AS scheduled
      FROM conveyor.v_job_limits AS l
     WHERE %(queue)s::text IS NULL OR l.queue = %(queue)s
     ORDER BY l.queue, l.concurrency_key NULLS FIRST
"""
_ENABLED: LiteralString = "SELECT conveyor.fn_config_get(key => 'queue.limits.enabled')"


@queue.command("show")
@click.argument("queue_name", metavar="[QUEUE]", required=False)
@click.pass_context
def queue_show(ctx: click.Context, queue_name: str | None) -> None:
    """The limits of every limited queue (or QUEUE's): caps, jobs in progress, rates, backlog."""
    with connection(ctx, needs_phase=8) as conn:
        rows = conn.execute(_SHOW, {"queue": queue_name}).fetchall()
        enabled = conn.execute(_ENABLED).fetchone()
    if not rows:
        where = f"queue {queue_name} has no limits" if queue_name else "no queue has limits"
        console.print(
            f"{where}; set one with `conveyor queue limit QUEUE --max-in-progress N` "
            "or `--rate N --per SECONDS`",
            markup=False,
        )
        return
    table = Table(title=f"queue limits ({len({row[0] for row in rows})} queues)")
    for column in ("queue", "key", "in progress / cap", "rate", "current rate", "backlog"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in _cells(row)))
        if row[1] is None and row[3] is not None:  # the cap of every key without its own
            table.add_row(escape(row[0]), "(each other key)", f"— / {row[3]}", "", "", "")
    console.print(table)
    if not (enabled and enabled[0] is True):
        console.print(
            "queue.limits.enabled is false: claims ignore these limits; switch them on with "
            "`conveyor config set queue.limits.enabled true`",
            markup=False,
        )


def _cells(row: tuple[Any, ...]) -> tuple[str, ...]:
    name, key, cap, _, in_progress, rate, per, tokens, per_second, ready, scheduled = row
    key_cell = "(whole queue)" if key is None else key
    rate_cell = "—" if rate is None else f"{_rate(rate, per)} ({tokens} claimable now)"
    if key is None:
        backlog = f"{ready or 0} ready" + (f", {scheduled} scheduled" if scheduled else "")
    else:
        backlog = ""
    return (
        name,
        key_cell,
        f"{in_progress} / {'—' if cap is None else cap}",
        rate_cell,
        f"{Decimal(per_second).normalize():f}/s",
        backlog,
    )
