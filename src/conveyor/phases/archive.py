"""Archives of rows a rollback would drop: a psql script that `restore` (or psql) loads back.

Each table becomes `CREATE TEMP TABLE … (LIKE …)`, a `COPY … FROM stdin` block, and an
`INSERT … OVERRIDING SYSTEM VALUE … ON CONFLICT DO NOTHING`, so restoring after the phase is
re-applied keeps rows the new data.up seeded again, and parents load before children.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, LiteralString, TextIO

import psycopg
from psycopg import sql

from conveyor.errors import PhaseError

Conn = psycopg.Connection[Any]

_COLUMNS: LiteralString = """
SELECT a.attname, a.attidentity <> ''
  FROM pg_attribute AS a
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum
"""

# Foreign keys among the archived tables: (child, parent).
_REFERENCES: LiteralString = """
SELECT co.conrelid::regclass::text, co.confrelid::regclass::text
  FROM pg_constraint AS co
 WHERE co.contype = 'f' AND co.conrelid = ANY(%(tables)s::regclass[])
   AND co.confrelid = ANY(%(tables)s::regclass[]) AND co.conrelid <> co.confrelid
"""


def write(conn: Conn, phase: int, title: str, tables: list[str], path: Path) -> None:
    """Write the rows of *tables* to *path* as a psql script (atomically: temp file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            write_header(out, phase, title, path.name)
            for table in parents_first(conn, tables):
                write_table(conn, table, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def parents_first(conn: Conn, tables: list[str]) -> list[str]:
    """*tables* ordered so every table comes after the tables its foreign keys point to."""
    edges = conn.execute(_REFERENCES, {"tables": tables}).fetchall()
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in edges:  # regclass::text is schema-qualified: conveyor is not on the path
        if str(child) in parents:
            parents[str(child)].add(str(parent))
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = sorted(t for t in tables if t not in ordered and parents[t] <= set(ordered))
        if not ready:  # a cycle: keep the remaining order, the INSERTs will say what failed
            ready = [t for t in tables if t not in ordered]
        ordered.extend(ready)
    return ordered


def write_header(out: TextIO, phase: int, title: str, name: str) -> None:
    out.write(
        f"-- conveyor archive of phase {phase} ({title}) rows, taken "
        f"{datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"-- Restore after `conveyor phase apply {phase}` with `conveyor phase restore {name}`\n"
        f"-- or `psql -v ON_ERROR_STOP=1 -1 -f {name}`; rows that exist again are kept as\n"
        "-- they are.\n"
    )


def write_table(conn: Conn, table: str, out: TextIO) -> int:
    """Append *table*'s rows to the archive; return how many."""
    schema, name = table.split(".", 1)
    columns = conn.execute(_COLUMNS, (table,)).fetchall()
    names = [str(c[0]) for c in columns]
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    target = sql.Identifier(schema, name)
    staging = sql.Identifier(f"restore_{schema}_{name}")
    overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if any(c[1] for c in columns) else sql.SQL("")
    statements = [
        sql.SQL("\nCREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP;").format(staging, target),
        sql.SQL("COPY {} ({}) FROM stdin;").format(staging, column_list),
    ]
    for statement in statements:
        out.write(statement.as_string(conn) + "\n")
    rows = 0
    copy_sql = sql.SQL("COPY {} ({}) TO STDOUT").format(target, column_list)
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for data in copy:
            text = bytes(data).decode("utf-8")
            rows += text.count("\n")
            out.write(text)
    out.write("\\.\n")
    insert = sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} ON CONFLICT DO NOTHING;").format(
        target, column_list, overriding, column_list, staging
    )
    out.write(insert.as_string(conn) + "\n")
    for column, identity in columns:
        if identity:
            out.write(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({}, {}), "
                    "greatest((SELECT max({}) FROM {}), 1));\n"
                )
                .format(sql.Literal(table), sql.Literal(column), sql.Identifier(column), target)
                .as_string(conn)
            )
    return rows


def restore(conn: Conn, path: Path) -> dict[str, int]:
    """Run an archive script in one transaction; return rows inserted per table."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError as error:
        raise PhaseError(f"cannot read archive {path}: {error.strerror}") from error
    restored: dict[str, int] = {}
    pending: list[str] = []
    i = 0
    with conn.transaction():
        while i < len(lines):
            line = lines[i]
            i += 1
            if line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
                end = lines.index("\\.\n", i)
                _execute_copy(conn, path, line.rstrip().rstrip(";"), "".join(lines[i:end]))
                i = end + 1
            elif line.startswith("--") or not line.strip():
                continue
            else:
                pending.append(line)
                if line.rstrip().endswith(";"):
                    statement = "".join(pending)
                    pending = []
                    rowcount = _execute(conn, path, statement)
                    if statement.startswith("INSERT INTO "):
                        table = statement.split()[2].replace('"', "")
                        restored[table] = restored.get(table, 0) + rowcount
    return restored


def _execute(conn: Conn, path: Path, statement: str) -> int:
    try:
        return conn.execute(statement.encode()).rowcount
    except psycopg.Error as error:
        raise PhaseError(
            f"restoring {path} failed at {statement.strip()[:80]!r}: {str(error).strip()}; is the "
            "phase applied (`conveyor phase status`)? Nothing was restored"
        ) from error


def _execute_copy(conn: Conn, path: Path, statement: str, data: str) -> None:
    try:
        with conn.cursor() as cursor, cursor.copy(statement.encode()) as copy:
            copy.write(data)
    except psycopg.Error as error:
        raise PhaseError(
            f"restoring {path} failed in {statement!r}: {str(error).strip()}"
        ) from error
