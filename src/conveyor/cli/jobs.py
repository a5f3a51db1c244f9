"""`conveyor enqueue` and `conveyor dlq list|replay`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, LiteralString

import click
from rich.markup import escape
from rich.table import Table

from conveyor import jobs
from conveyor.calls import call
from conveyor.cli.context import connection, console
from conveyor.errors import ConfigError, Refused


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"not valid JSON ({error.msg} at char {error.pos})", param_hint="--payload"
        ) from error
    if not isinstance(value, dict):
        raise click.BadParameter(
            "must be a JSON object, e.g. '{\"to\": 42}'", param_hint="--payload"
        )
    return value


@click.command()
@click.argument("kind")
@click.option("--payload", default="{}", show_default=True, help="JSON object.")
@click.option("--queue", default=None)
@click.option("--priority", type=int, default=None, help="Higher runs first.")
@click.option(
    "--run-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), default=None
)
@click.option("--idempotency-key", default=None)
@click.option("--max-attempts", type=int, default=None)
@click.option(
    "--concurrency-key",
    default=None,
    help="Key of the queue's per-key limits and fairness (phase 8), e.g. a tenant.",
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    kind: str,
    payload: str,
    queue: str | None,
    priority: int | None,
    run_at: datetime | None,
    idempotency_key: str | None,
    max_attempts: int | None,
    concurrency_key: str | None,
) -> None:
    """Enqueue one job of KIND and print its id."""
    body = _payload(payload)
    # Only phase 8's fn_job_enqueue takes a key; without one, enqueue needs phase 1 alone.
    with connection(ctx, needs_phase=1 if concurrency_key is None else 8) as conn:
        job_id = jobs.enqueue(
            conn,
            kind,
            body,
            queue=queue,
            priority=priority,
            run_at=run_at,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            concurrency_key=concurrency_key,
        )
    console.print(job_id)


@click.group()
def dlq() -> None:
    """The dead letter queue: list and replay."""


@dlq.command("list")
@click.option("--kind", default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.pass_context
def dlq_list(ctx: click.Context, kind: str | None, limit: int) -> None:
    """Unresolved dead letters, newest first (no payloads)."""
    with connection(ctx, needs_phase=1) as conn:
        rows = conn.execute(
            "SELECT d.id, d.job_id, d.queue, d.kind, d.reason, d.attempts, d.failed_at, d.error"
            "  FROM conveyor.v_job_queue_dead_letter_open AS d"
            " WHERE %(kind)s::text IS NULL OR d.kind = %(kind)s"
            " ORDER BY d.failed_at DESC, d.id DESC LIMIT %(limit)s",
            {"kind": kind, "limit": limit},
        ).fetchall()
    table = Table(title=f"open dead letters ({len(rows)})")
    for column in ("id", "job", "queue", "kind", "reason", "attempts", "failed at", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(str(v)[:80]) if v is not None else "" for v in row))
    console.print(table)


REPLAY_SQL: LiteralString = """
    SELECT conveyor.fn_job_dead_letter_replay(dead_letter_id => %s, kind => %s, queue => %s,
                                              max_rows => %s, replayed_by => %s)
"""


@dlq.command("replay")
@click.argument("dead_letter_id", type=int, required=False)
@click.option("--kind", default=None, help="Replay every open dead letter of this kind.")
@click.option("--queue", default=None, help="… or of this queue.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many (the database's default when left out).",
)
@click.option("--by", default=None, help="Who replays (recorded).")
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    dead_letter_id: int | None,
    kind: str | None,
    queue: str | None,
    limit: int | None,
    by: str | None,
) -> None:
    """Put dead-lettered jobs back in the queue with attempts = 0."""
    if dead_letter_id is None and kind is None and queue is None:
        raise click.UsageError("give a DEAD_LETTER_ID, or --kind/--queue to replay by filter")
    with connection(ctx, needs_phase=2) as conn:
        try:
            answer = call(conn, REPLAY_SQL, (dead_letter_id, kind, queue, limit, by))
        except Refused as refusal:
            if refusal.reason != "not_found":
                raise
            raise ConfigError(
                f"there is no dead letter {dead_letter_id}; `conveyor dlq list` shows the open ones"
            ) from refusal
    for item in answer.get("replayed", []):
        console.print(f"dead letter {item['dead_letter_id']} → job {item['job_id']}", markup=False)
    for item in answer.get("skipped", []):
        detail = ", ".join(
            f"{k}={v}" for k, v in item.items() if k not in {"dead_letter_id", "reason"}
        )
        console.print(
            f"dead letter {item['dead_letter_id']} skipped: {item['reason']} {detail}".rstrip(),
            markup=False,
        )
    if not answer.get("replayed") and not answer.get("skipped"):
        console.print("nothing to replay")
