"""`conveyor workflow register|emit|list|show|cancel|complete-step`: MOT workflows by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from conveyor import workflow
from conveyor.cli.context import connection, console

STATE_STYLES = {
    "waiting": "dim",
    "queued": "cyan",
    "in_progress": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "skipped": "magenta",
    "active": "yellow",
}


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"not valid JSON ({error.msg} at char {error.pos})", param_hint=option
        ) from error
    if not isinstance(value, dict):
        raise click.BadParameter(
            "must be a JSON object, e.g. '{\"record_id\": 42}'", param_hint=option
        )
    return value


def _styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


@click.group("workflow")
def workflow_group() -> None:
    """MOT workflows: templates emitted as graphs of jobs."""


@workflow_group.command("register")
@click.argument("name")
@click.argument("steps_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--description", default=None)
@click.pass_context
def register(ctx: click.Context, name: str, steps_file: Path, description: str | None) -> None:
    """Store the JSON array of steps in STEPS_FILE as the next version of template NAME."""
    try:
        steps = json.loads(steps_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"{steps_file}: not valid JSON ({error.msg} at line {error.lineno})",
            param_hint="STEPS_FILE",
        ) from error
    if not isinstance(steps, list):
        raise click.BadParameter(
            f"{steps_file}: must hold a JSON array of steps", param_hint="STEPS_FILE"
        )
    with connection(ctx, needs_phase=6) as conn:
        stored = workflow.register_template(conn, name, steps, description=description)
    verb = "stored as" if stored.created else "unchanged:"
    console.print(f"{stored.name} {verb} version {stored.version} ({stored.steps} steps)")


@workflow_group.command("emit")
@click.argument("template")
@click.option("--version", type=int, default=None, help="Template version (default: latest).")
@click.option("--params", default="{}", show_default=True, help="JSON object merged into payloads.")
@click.option("--idempotency-key", default=None, help="Emit once per key.")
@click.option("--dry-run", is_flag=True, help="Show the graph it would create; write nothing.")
@click.pass_context
def emit(
    ctx: click.Context,
    template: str,
    version: int | None,
    params: str,
    idempotency_key: str | None,
    dry_run: bool,
) -> None:
    """Emit TEMPLATE as a workflow: roots queued, the other steps waiting on their parents."""
    values = _json_object(params, "--params")
    with connection(ctx, needs_phase=6) as conn:
        if dry_run:
            planned = workflow.plan(conn, template, version=version, params=values)
            table = Table(title=f"{template}: {len(planned)} steps (dry run, nothing written)")
            for column in ("step", "kind", "executor", "queue", "status", "after", "on failure"):
                table.add_column(column)
            for step in planned:
                table.add_row(
                    step.key,
                    step.kind,
                    step.executor,
                    step.queue,
                    _styled(step.status),
                    ", ".join(step.parents),
                    step.on_failure,
                )
            console.print(table)
            return
        emitted = workflow.emit(
            conn, template, version=version, params=values, idempotency_key=idempotency_key
        )
    suffix = " (already emitted with this key)" if emitted.already else ""
    console.print(f"{emitted.workflow_id}{suffix}")


@workflow_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["active", "succeeded", "failed", "cancelled"]),
    default=None,
    help="Only workflows in this status.",
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.pass_context
def list_command(ctx: click.Context, status: str | None, limit: int) -> None:
    """The newest workflows and their status."""
    with connection(ctx, needs_phase=6) as conn:
        rows = workflow.list_workflows(conn, status=status, limit=limit)
    table = Table(title=f"workflows ({len(rows)})")
    for column in ("id", "template", "status", "steps open", "failed step", "created", "finished"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.workflow_id),
            f"{row.template} v{row.template_version}",
            _styled(row.status),
            f"{row.steps_open}/{row.steps_total}",
            row.failed_step or "",
            row.created_at.isoformat(timespec="seconds"),
            row.finished_at.isoformat(timespec="seconds") if row.finished_at else "",
        )
    console.print(table)


def _depths(steps: list[workflow.Step]) -> dict[str, int]:
    """Each step's depth in the graph: 0 for a root, else one more than its deepest parent."""
    by_key = {step.step_key: step for step in steps}
    depths: dict[str, int] = {}

    def depth(key: str) -> int:
        if key not in depths:
            parents = by_key[key].parents
            depths[key] = 1 + max(depth(p) for p in parents) if parents else 0
        return depths[key]

    for step in steps:
        depth(step.step_key)
    return depths


@workflow_group.command("show")
@click.argument("workflow_id", type=int)
@click.pass_context
def show(ctx: click.Context, workflow_id: int) -> None:
    """Draw WORKFLOW_ID's graph as text, each step with its state."""
    with connection(ctx, needs_phase=6) as conn:
        found = workflow.get(conn, workflow_id)
        steps = workflow.steps(conn, workflow_id) if found else []
    if found is None:
        raise click.ClickException(
            f"there is no workflow {workflow_id}; see `conveyor workflow list`"
        )
    title = (
        f"workflow {found.workflow_id} · {found.template} v{found.template_version} · "
        f"{_styled(found.status)} · {found.steps_total - found.steps_open} of "
        f"{found.steps_total} steps ended"
    )
    if found.failed_step:
        title += f" · failed at {found.failed_step}"
    if found.cancel_reason:
        title += f" · cancelled by {found.cancelled_by}: {found.cancel_reason}"
    depths = _depths(steps)
    table = Table(title=title, title_justify="left")
    for column in ("step", "state", "kind", "executor", "after", "attempts", "by"):
        table.add_column(column)
    for step in sorted(steps, key=lambda s: (depths[s.step_key], s.ord)):
        depth = depths[step.step_key]
        label = ("   " * (depth - 1) + "└─ " if depth else "") + step.step_key
        table.add_row(
            label,
            _styled(step.state),
            step.kind,
            step.executor,
            ", ".join(step.parents),
            "" if step.attempts is None else str(step.attempts),
            step.completed_by or "",
        )
    console.print(table)


@workflow_group.command("cancel")
@click.argument("workflow_id", type=int)
@click.option("--reason", default=None, help="Recorded on the workflow and its steps.")
@click.option("--by", default=None, help="Who cancels (recorded; default: the database user).")
@click.pass_context
def cancel(ctx: click.Context, workflow_id: int, reason: str | None, by: str | None) -> None:
    """Cancel WORKFLOW_ID: steps not run are cancelled, running steps asked to stop."""
    with connection(ctx, needs_phase=6) as conn:
        answer = workflow.cancel(conn, workflow_id, reason=reason, cancelled_by=by)
    console.print(
        f"workflow {workflow_id} cancelled: {answer['cancelled']} steps cancelled, "
        f"{answer['cancel_requested']} running steps asked to stop"
    )


@workflow_group.command("complete-step")
@click.argument("workflow_id", type=int)
@click.argument("step")
@click.option("--by", default=None, help="Who completes it (recorded; default: the database user).")
@click.option("--result", default=None, help="JSON object handed to the children as the result.")
@click.pass_context
def complete_step(
    ctx: click.Context, workflow_id: int, step: str, by: str | None, result: str | None
) -> None:
    """Finish operator STEP of WORKFLOW_ID (e.g. an approval); its children are released."""
    values = _json_object(result, "--result") if result is not None else None
    with connection(ctx, needs_phase=6) as conn:
        answer = workflow.complete_step(conn, workflow_id, step, completed_by=by, result=values)
    console.print(f"workflow {workflow_id}: step {step} completed by {answer['completed_by']}")
