"""`conveyor health`: v_queue_health as a table, and for every component that is not fresh, what
that means and the command that resolves it."""

from __future__ import annotations

import asyncio
from typing import Any, LiteralString

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from conveyor import db, notify
from conveyor.calls import call
from conveyor.cli.context import connection, console, err_console, state

HEALTH_SQL: LiteralString = """
    SELECT h.component, h.component_kind AS kind, h.status_hint,
           round(h.heartbeat_age_seconds::numeric, 1) AS beat_age_s,
           h.cursor_lag_events AS cursor_lag, h.backlog_count AS backlog,
           round(h.oldest_ready_age_seconds::numeric, 1) AS oldest_ready_s,
           h.in_progress_count AS in_progress, h.expired_lease_count AS expired_leases,
           h.dead_letter_open_count AS dead_letters
      FROM conveyor.v_queue_health AS h
     ORDER BY h.component
"""
SIGNALS_SQL: LiteralString = """
    SELECT round(s.oldest_xmin_age_seconds::numeric, 1), s.oldest_xmin_age_xids,
           s.job_queue_dead_tuples, s.job_queue_live_tuples, s.autovacuum_off_tables,
           round(s.notification_queue_usage::numeric, 3), s.database_hint
      FROM conveyor.fn_queue_health__db_signals() AS s
"""
# On a standby: how old the last replayed transaction is, and whether all WAL received is replayed.
REPLICA_SQL: LiteralString = """
    SELECT pg_is_in_recovery(),
           round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 1),
           pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
"""
FORGET_SQL: LiteralString = "SELECT conveyor.fn_heartbeat_deregister(component => %s::text)"

# How to bring each kind of component back.
_RESTART = {
    "worker": "start it again (`conveyor worker --app …` or `conveyor up`)",
    "orchestrator": "start it again (`conveyor orchestrator` or `conveyor up`)",
    "outbound": "run `conveyor outbound`, or `conveyor orchestrator`, which ticks it",
}


def explain(component: str, kind: str, hint: str, age: Any) -> str:
    """One line: what *hint* means for this component and the command that resolves it."""
    restart = _RESTART.get(kind, "start it again")
    forget = f"`conveyor health --forget {component}`"
    if hint == "stale":
        return (
            f"{component} ({kind}) is stale: no heartbeat for {age} s, past its threshold. If it "
            f"is running, {restart}; if it crashed or was retired for good, clear it with {forget}"
        )
    if hint == "late":
        return (
            f"{component} ({kind}) is late: its last beat was {age} s ago, over twice its "
            "cadence. It may be overloaded or blocked; it turns stale past the threshold"
        )
    if hint == "never":
        return (
            f"{component} ({kind}) registered but never beat: check its log that it started; "
            f"if it is gone, clear it with {forget}"
        )
    return f"{component} ({kind}) is {hint}"


def _signals_line(signals: tuple[Any, ...]) -> str:
    xmin_s, xmin_xids, dead, live, autovacuum_off, notify, hint = signals
    long_tx = (
        "no long transaction"
        if xmin_s is None and xmin_xids is None
        else f"vacuum horizon held {xmin_s if xmin_s is not None else '?'} s / {xmin_xids} xids"
    )
    line = (
        f"database: {long_tx}, job_queue {dead} dead / {live} live tuples, "
        f"notification queue usage {notify}"
    )
    if autovacuum_off:
        line += f", autovacuum skips {', '.join(autovacuum_off)}"
    return line + ("" if hint == "ok" else f"; WARNING: {hint}")


def _replica_line(replica: tuple[Any, ...]) -> str | None:
    in_recovery, age, replayed_all = replica
    if not in_recovery:
        return None
    if age is None:
        return "replica: reading from a standby that has replayed no transaction yet"
    caught_up = "all WAL it received is replayed" if replayed_all else "replay is behind"
    return f"replica: reading from a standby, last replayed transaction {age} s old ({caught_up})"


def listener_line(url: str) -> str:
    """How workers on *url* learn of new jobs: LISTEN/NOTIFY, or polling and why."""
    try:
        problem = asyncio.run(notify.probe(db.listen_url(url)))
    except psycopg.Error as error:
        return f"listener: could not probe LISTEN/NOTIFY ({type(error).__name__}); workers poll"
    if problem is None:
        return "listener: LISTEN/NOTIFY works (workers wake at once when the bridge is on)"
    return f"listener: polling only: {problem}"


@click.command()
@click.option(
    "--forget",
    "forget",
    multiple=True,
    metavar="COMPONENT",
    help="Deregister a component that is gone for good (e.g. a crashed worker), then report.",
)
@click.pass_context
def health(ctx: click.Context, forget: tuple[str, ...]) -> None:
    """v_queue_health as a table; exit 0 only when every component is fresh (a monitor probe)."""
    if forget:  # a write: never on the read route
        with connection(ctx, application_name="conveyor-health", needs_phase=3) as conn:
            for component in forget:
                call(conn, FORGET_SQL, (component,))
                err_console.print(f"forgot {escape(component)}")
    with connection(ctx, application_name="conveyor-health", needs_phase=3, route="read") as conn:
        cursor = conn.execute(HEALTH_SQL)
        columns = [c.name for c in cursor.description or []]
        rows = cursor.fetchall()
        signals = conn.execute(SIGNALS_SQL).fetchone()
        replica = conn.execute(REPLICA_SQL).fetchone()
    table = Table(title="queue health")
    for column in columns:
        table.add_column(column.replace("_", " "))
    colour = {"fresh": "green", "late": "yellow", "stale": "red", "never": "red"}
    hint_at = columns.index("status_hint")
    for row in rows:
        cells = [escape("" if v is None else str(v)) for v in row]
        hint = str(row[hint_at])
        cells[hint_at] = f"[{colour.get(hint, 'white')}]{hint}[/{colour.get(hint, 'white')}]"
        table.add_row(*cells)
    console.print(table)
    if not rows:
        console.print("no component is registered: start `conveyor worker` or `conveyor up`")
    if signals is not None and rows:
        console.print(_signals_line(tuple(signals)), markup=False)
    replica_text = _replica_line(tuple(replica)) if replica is not None else None
    if replica_text is not None:
        console.print(replica_text, markup=False)
    console.print(listener_line(db.resolve_url(state(ctx).settings)), markup=False)
    unhealthy = [row for row in rows if row[hint_at] != "fresh"]
    for row in unhealthy:
        err_console.print(explain(str(row[0]), str(row[1]), str(row[2]), row[3]), markup=False)
    if unhealthy:
        err_console.print(f"not fresh: {', '.join(str(row[0]) for row in unhealthy)}", markup=False)
        raise SystemExit(1)
