"""`conveyor config list|get|set`: the flags and settings in dot_config, over fn_config_get and
fn_config_set. Meanings are the rows' descriptions; defaults are what the applied phases' data
files set, read from those files (never a second copy here)."""

from __future__ import annotations

import json
import re
from typing import Any, LiteralString

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from conveyor.calls import call
from conveyor.cli.context import applied_phases, connection, console, err_console
from conveyor.errors import ConfigError
from conveyor.phases import catalog, sqlfile

_LIST: LiteralString = """
    SELECT dc.key, dc.value, dc.description, dc.updated_by, dc.updated_at
      FROM conveyor.dot_config AS dc
     WHERE %(prefix)s::text IS NULL OR dc.key LIKE %(prefix)s || '%%'
     ORDER BY dc.key
"""
_GET: LiteralString = "SELECT conveyor.fn_config_get(key => %s)"
_SET: LiteralString = (
    "SELECT conveyor.fn_config_set(key => %s, value => %s::jsonb, updated_by => %s)"
)
_DOT_CONFIG_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE)\s+conveyor\.dot_config\b", re.I)
_DEFAULTS_TABLE = "pg_temp.conveyor_config_defaults"


def shipped_defaults(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Each key's value as the applied phases' data files set it, in phase order.

    Replays those files' dot_config statements against a temporary copy of the table inside a
    transaction that is rolled back, so the SQL files stay the only place defaults are written.
    """
    applied = applied_phases(conn)
    with conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE TEMP TABLE conveyor_config_defaults"
            " (LIKE conveyor.dot_config INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        for phase in catalog.PHASES:
            if phase.number not in applied or not phase.implemented:
                continue
            for statement in sqlfile.read(phase.file("data.up")).statements():
                if _DOT_CONFIG_WRITE.match(sqlfile.strip_comments_and_literals(statement.text)):
                    text = statement.text.replace("conveyor.dot_config", _DEFAULTS_TABLE, 1)
                    conn.execute(text.encode())
        rows = conn.execute("SELECT d.key, d.value FROM pg_temp.conveyor_config_defaults AS d")
        return {str(key): value for key, value in rows.fetchall()}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@click.group()
def config() -> None:
    """Flags and settings (dot_config): list, get, set."""


@config.command("list")
@click.argument("prefix", required=False)
@click.pass_context
def config_list(ctx: click.Context, prefix: str | None) -> None:
    """Every key (or those starting with PREFIX): value, default, who set it, what it means."""
    with connection(ctx, needs_phase=0) as conn:
        rows = conn.execute(_LIST, {"prefix": prefix}).fetchall()
        defaults = shipped_defaults(conn)
    table = Table(title=f"conveyor config ({len(rows)} keys)", show_lines=True)
    for column in ("key", "value", "default", "set by", "meaning"):
        table.add_column(column, overflow="fold")
    for key, value, description, updated_by, updated_at in rows:
        default = _json(defaults[key]) if key in defaults else "—"
        changed = key in defaults and defaults[key] != value
        shown = f"[bold yellow]{escape(_json(value))}[/]" if changed else escape(_json(value))
        table.add_row(
            escape(key),
            shown,
            escape(default),
            escape(f"{updated_by} {updated_at:%Y-%m-%d %H:%M}"),
            escape(description or ""),
        )
    console.print(table)
    console.print("change one with `conveyor config set KEY VALUE --by NAME`")


@config.command("get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> None:
    """Print KEY's value as JSON; exit 1 when it is not set."""
    with connection(ctx, needs_phase=0) as conn:
        row = conn.execute(_GET, (key,)).fetchone()
    if row is None or row[0] is None:
        raise ConfigError(f"{key} is not set; `conveyor config list` shows every key")
    console.print(_json(row[0]), markup=False)


def _value(text: str) -> Any:
    """VALUE as JSON (true, 300, "latest", [..]); a bare word that is not JSON is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text):
            return text
        raise click.BadParameter(
            f"{text!r} is not JSON; write e.g. true, 300, '\"latest\"' or '[\"mail\"]'",
            param_hint="VALUE",
        ) from None


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--by", default=None, help="Who makes the change (recorded; default: the DB role).")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str, by: str | None) -> None:
    """Set KEY to VALUE (JSON: true, 300, "latest"); the change is recorded with who made it."""
    parsed = _value(value)
    with connection(ctx, needs_phase=0) as conn:
        answer = call(conn, _SET, (key, json.dumps(parsed), by))
    previous = answer.get("previous")
    if previous is None:
        err_console.print(
            f"note: {escape(key)} was not set before; `conveyor config list` shows the known keys"
        )
    console.print(f"{key}: {_json(previous)} → {_json(answer.get('value'))}", markup=False)
