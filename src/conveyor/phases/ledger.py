"""The phase runner's ledger (schema ``conveyor_meta``): what each phase's state is, who ratified
it, which files ran with which checksum, which gates ran, which objects a phase installed;
the advisory lock every runner command holds; and the always-rolled-back transaction that dry
runs, gates and probes use.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from conveyor.errors import PhaseError
from conveyor.phases import sqlfile
from conveyor.phases.catalog import Phase

if TYPE_CHECKING:
    from conveyor.phases.gates import GateResult

# pg_advisory_lock key: "conveyor phase runner" (an arbitrary constant, shared by all runners).
_LOCK_KEY = 0x636F6E76_65796F72 & 0x7FFFFFFFFFFFFFFF

Conn = psycopg.Connection[Any]


class _Rollback(Exception):
    """Raised inside a transaction block to roll it back on purpose."""


@contextmanager
def rolled_back(conn: Conn) -> Iterator[None]:
    """A transaction that is always rolled back: dry runs, gates and probes leave no trace."""
    try:
        with conn.transaction():
            yield
            raise _Rollback
    except _Rollback:
        pass


def bootstrap(conn: Conn) -> None:
    """Create the runner's own ledger schema (idempotent)."""
    text = (Path(str(resources.files("conveyor") / "sql")) / "meta.sql").read_text()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(text.encode())


@contextmanager
def locked(conn: Conn) -> Iterator[None]:
    """Hold the runner's session advisory lock for the duration of a command."""
    if not conn.autocommit:
        raise PhaseError("the phase runner needs an autocommit connection")
    bootstrap(conn)
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def state(conn: Conn, number: int) -> str:
    row = conn.execute(
        "SELECT ps.state FROM conveyor_meta.phase_state AS ps WHERE ps.phase = %s", (number,)
    ).fetchone()
    return str(row[0]) if row else "not applied"


def applied_phases(conn: Conn) -> set[int]:
    """Numbers of the phases currently applied."""
    bootstrap(conn)
    rows = conn.execute(
        "SELECT ps.phase FROM conveyor_meta.phase_state AS ps WHERE ps.state = 'applied'"
    ).fetchall()
    return {int(r[0]) for r in rows}


def who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ratification(conn: Conn, number: int) -> tuple[str, datetime] | None:
    """The latest ratification given after the phase's last rollback, if any."""
    row = conn.execute(
        """
        SELECT r.ratified_by, r.ratified_at
          FROM conveyor_meta.ratification AS r
         WHERE r.phase = %(phase)s
           AND r.ratified_at > coalesce((SELECT max(l.applied_at) FROM conveyor_meta.ledger AS l
                                          WHERE l.phase = %(phase)s AND l.file = 'ddl.down'),
                                        '-infinity')
         ORDER BY r.id DESC LIMIT 1
        """,
        {"phase": number},
    ).fetchone()
    return (str(row[0]), row[1]) if row else None


def changed_files(conn: Conn, phase: Phase) -> tuple[str, ...]:
    """Up files whose checksum differs from the one recorded when they were applied."""
    changed: list[str] = []
    for name in ("ddl.up", "data.up"):
        row = conn.execute(
            "SELECT l.checksum FROM conveyor_meta.ledger AS l WHERE l.phase = %s AND l.file = %s"
            " ORDER BY l.id DESC LIMIT 1",
            (phase.number, name),
        ).fetchone()
        if row and phase.file(name).is_file() and sqlfile.read(phase.file(name)).checksum != row[0]:
            changed.append(f"{name}.sql")
    return tuple(changed)


def flags(conn: Conn, phase: Phase) -> dict[str, Any]:
    if not phase.flags:
        return {}
    if conn.execute("SELECT to_regclass('conveyor.dot_config')").fetchone() == (None,):
        return {}
    rows = conn.execute(
        "SELECT dc.key, dc.value FROM conveyor.dot_config AS dc WHERE dc.key = ANY(%s)",
        (list(phase.flags),),
    ).fetchall()
    return {str(k): v for k, v in rows}


def record_file(
    conn: Conn, phase: Phase, name: str, loaded: sqlfile.SqlFile, by: str, t0: float
) -> None:
    conn.execute(
        "INSERT INTO conveyor_meta.ledger (phase, file, checksum, applied_by, duration_ms)"
        " VALUES (%s, %s, %s, %s, %s)",
        (phase.number, name, loaded.checksum, by, round((time.monotonic() - t0) * 1000, 1)),
    )


def set_state(conn: Conn, phase: Phase, state: str, by: str) -> None:
    conn.execute(
        """
        INSERT INTO conveyor_meta.phase_state (phase, state, changed_by) VALUES (%s, %s, %s)
        ON CONFLICT (phase) DO UPDATE
           SET state = excluded.state, changed_at = now(), changed_by = excluded.changed_by
        """,
        (phase.number, state, by),
    )


def record_gate(conn: Conn, result: GateResult, by: str) -> None:
    conn.execute(
        "INSERT INTO conveyor_meta.gate_run (phase, ran_by, passed, items) VALUES (%s, %s, %s, %s)",
        (
            result.phase,
            by,
            result.passed,
            Jsonb([{"item": i.item, "passed": i.passed, "detail": i.detail} for i in result.items]),
        ),
    )


def record_objects(conn: Conn, phase: Phase, objects: list[tuple[str, str]]) -> None:
    conn.execute("DELETE FROM conveyor_meta.phase_object WHERE phase = %s", (phase.number,))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO conveyor_meta.phase_object (phase, object_kind, object_name)"
            " VALUES (%s, %s, %s)",
            [(phase.number, kind, name) for kind, name in objects],
        )


def capture_snapshot(conn: Conn, phase: Phase) -> None:
    conn.execute(
        """
        INSERT INTO conveyor_meta.phase_snapshot (phase, kind, value)
        VALUES (%s, 'outbox', conveyor_meta.fn_outbox_snapshot())
        ON CONFLICT (phase, kind) DO UPDATE SET value = excluded.value, captured_at = now()
        """,
        (phase.number,),
    )


def table_exists(conn: Conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,)


def row_counts(conn: Conn, tables: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        schema, name = table.split(".", 1)
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def phase_tables(conn: Conn, phase: Phase) -> list[str]:
    """The tables *phase* installed that still exist, by name."""
    rows = conn.execute(
        "SELECT po.object_name FROM conveyor_meta.phase_object AS po"
        " WHERE po.phase = %s AND po.object_kind = 'table' ORDER BY po.object_name",
        (phase.number,),
    ).fetchall()
    return [str(r[0]) for r in rows if table_exists(conn, str(r[0]))]
