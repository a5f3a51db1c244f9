"""The phase runner: status, plan, ratify, apply, verify, rollback and restore.

Governance rules live here (ratification before apply, dependency order, DDL and data in
separate transactions, a ledger row per file, protected objects fingerprinted); the SQL of each
phase lives in its files. Every command serializes on one advisory lock, so two `apply` at once
run one after the other.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from conveyor.errors import DisciplineError, GateFailed, PhaseError, PhaseOrderError
from conveyor.phases import archive, catalog, fingerprint, sqlfile
from conveyor.phases.catalog import Phase
from conveyor.phases.sqlfile import Kind

log = logging.getLogger(__name__)

# pg_advisory_lock key: "conveyor phase runner" (an arbitrary constant, shared by all runners).
_LOCK_KEY = 0x636F6E76_65796F72 & 0x7FFFFFFFFFFFFFFF

Conn = psycopg.Connection[Any]


class _Rollback(Exception):
    """Raised inside a transaction block to roll it back on purpose."""


@contextmanager
def _rolled_back(conn: Conn) -> Iterator[None]:
    """A transaction that is always rolled back: dry runs, gates and probes leave no trace."""
    try:
        with conn.transaction():
            yield
            raise _Rollback
    except _Rollback:
        pass


@dataclass(frozen=True, slots=True)
class GateItem:
    """One row of a phase's gate.sql."""

    item: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class GateResult:
    """All items of one gate run."""

    phase: int
    items: tuple[GateItem, ...]

    @property
    def passed(self) -> bool:
        return bool(self.items) and all(item.passed for item in self.items)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(i.item, i.detail) for i in self.items if not i.passed]


@dataclass(frozen=True, slots=True)
class PhaseStatus:
    """What `conveyor phase status` shows for one phase."""

    phase: Phase
    state: str  # applied | ddl_applied | rolled_back | not applied | not implemented
    ratified_by: str | None
    ratified_at: datetime | None
    gate_passed: bool | None
    gate_at: datetime | None
    flags: dict[str, Any]
    changed_files: tuple[str, ...]

    @property
    def applied(self) -> bool:
        return self.state == "applied"


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The dry run of a phase: its SQL, what it would create, and the gate's verdict."""

    phase: Phase
    files: dict[str, str]
    objects: list[tuple[str, str]]
    gate: GateResult


@dataclass(slots=True)
class ApplyResult:
    """What `apply` did."""

    phase: Phase
    already_applied: bool = False
    files: list[str] = field(default_factory=list)
    objects: list[tuple[str, str]] = field(default_factory=list)
    gate: GateResult | None = None


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """What `rollback` did."""

    phase: Phase
    archived: dict[str, int]
    archive_path: Path | None


# ---------------------------------------------------------------------------------------------
# bootstrap, lock, small queries


def bootstrap(conn: Conn) -> None:
    """Create the runner's own ledger schema (idempotent)."""
    text = (Path(str(resources.files("conveyor") / "sql")) / "meta.sql").read_text()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(text.encode())


@contextmanager
def _locked(conn: Conn) -> Iterator[None]:
    """Hold the runner's session advisory lock for the duration of a command."""
    if not conn.autocommit:
        raise PhaseError("the phase runner needs an autocommit connection")
    bootstrap(conn)
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _state(conn: Conn, number: int) -> str:
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


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _ratification(conn: Conn, number: int) -> tuple[str, datetime] | None:
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


def _changed_files(conn: Conn, phase: Phase) -> tuple[str, ...]:
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


def _flags(conn: Conn, phase: Phase) -> dict[str, Any]:
    if not phase.flags:
        return {}
    if conn.execute("SELECT to_regclass('conveyor.dot_config')").fetchone() == (None,):
        return {}
    rows = conn.execute(
        "SELECT dc.key, dc.value FROM conveyor.dot_config AS dc WHERE dc.key = ANY(%s)",
        (list(phase.flags),),
    ).fetchall()
    return {str(k): v for k, v in rows}


# ---------------------------------------------------------------------------------------------
# status


def status(conn: Conn) -> list[PhaseStatus]:
    """One PhaseStatus per phase of the catalog."""
    bootstrap(conn)
    result: list[PhaseStatus] = []
    for phase in catalog.PHASES:
        state = _state(conn, phase.number) if phase.implemented else "not implemented"
        ratified = _ratification(conn, phase.number)
        gate = conn.execute(
            "SELECT g.passed, g.ran_at FROM conveyor_meta.gate_run AS g WHERE g.phase = %s"
            " ORDER BY g.id DESC LIMIT 1",
            (phase.number,),
        ).fetchone()
        result.append(
            PhaseStatus(
                phase=phase,
                state=state,
                ratified_by=ratified[0] if ratified else None,
                ratified_at=ratified[1] if ratified else None,
                gate_passed=bool(gate[0]) if gate else None,
                gate_at=gate[1] if gate else None,
                flags=_flags(conn, phase),
                changed_files=_changed_files(conn, phase) if state == "applied" else (),
            )
        )
    return result


# ---------------------------------------------------------------------------------------------
# running files and gates


def _implemented(number: int) -> Phase:
    phase = catalog.get(number)
    if not phase.implemented:
        raise PhaseError(
            f"phase {number} ({phase.title}) is not implemented in this version of conveyor"
        )
    return phase


def _load_checked(phase: Phase, names: tuple[str, ...]) -> dict[str, sqlfile.SqlFile]:
    """Read the named files and enforce the DDL/data discipline before anything runs."""
    files: dict[str, sqlfile.SqlFile] = {}
    for name in names:
        loaded = sqlfile.read(phase.file(name))
        sqlfile.check_discipline(loaded, Kind.DDL if name.startswith("ddl") else Kind.DML)
        files[name] = loaded
    return files


def _run_file(conn: Conn, loaded: sqlfile.SqlFile) -> None:
    """Run each statement of *loaded*; an error names the file, line and statement."""
    for statement in loaded.statements():
        try:
            conn.execute(statement.text.encode())
        except psycopg.Error as error:
            first_line = statement.text.splitlines()[0][:120]
            raise PhaseError(
                f"{loaded.path.parent.name}/{loaded.path.name}:{statement.line}: "
                f"{str(error).strip()} (statement starting {first_line!r})"
            ) from error


def _ledger(
    conn: Conn, phase: Phase, name: str, loaded: sqlfile.SqlFile, by: str, t0: float
) -> None:
    conn.execute(
        "INSERT INTO conveyor_meta.ledger (phase, file, checksum, applied_by, duration_ms)"
        " VALUES (%s, %s, %s, %s, %s)",
        (phase.number, name, loaded.checksum, by, round((time.monotonic() - t0) * 1000, 1)),
    )


def _set_state(conn: Conn, phase: Phase, state: str, by: str) -> None:
    conn.execute(
        """
        INSERT INTO conveyor_meta.phase_state (phase, state, changed_by) VALUES (%s, %s, %s)
        ON CONFLICT (phase) DO UPDATE
           SET state = excluded.state, changed_at = now(), changed_by = excluded.changed_by
        """,
        (phase.number, state, by),
    )


def _gate_statements(phase: Phase) -> list[sqlfile.Statement]:
    """gate.sql without its own BEGIN/ROLLBACK wrapper (the runner supplies the transaction)."""
    statements = sqlfile.read(phase.file("gate")).statements()
    while statements and statements[0].first_word in {"BEGIN", "START"}:
        statements = statements[1:]
    while statements and statements[-1].first_word in {"ROLLBACK", "ABORT"}:
        statements = statements[:-1]
    for statement in statements:
        if statement.kind() is Kind.TRANSACTION:
            raise DisciplineError(
                f"{phase.directory.name}/gate.sql:{statement.line}: only a leading BEGIN and a "
                "trailing ROLLBACK are allowed in a gate"
            )
    return statements


def _run_gate_statements(conn: Conn, phase: Phase) -> GateResult:
    """Run the gate inside the caller's transaction; return the last (item, passed, detail) set."""
    rows: list[tuple[Any, ...]] = []
    for statement in _gate_statements(phase):
        try:
            cursor = conn.execute(statement.text.encode())
        except psycopg.Error as error:
            raise PhaseError(
                f"{phase.directory.name}/gate.sql:{statement.line}: {str(error).strip()}"
            ) from error
        if cursor.description is not None and len(cursor.description) == 3:
            rows = cursor.fetchall()
    items = tuple(GateItem(str(r[0]), bool(r[1]), str(r[2] or "")) for r in rows)
    if not items:
        items = (
            GateItem(
                "gate returned rows", False, "gate.sql produced no (item, passed, detail) rows"
            ),
        )
    return GateResult(phase.number, items)


def _gate_in_rolled_back_transaction(conn: Conn, phase: Phase) -> GateResult:
    result: GateResult | None = None
    with _rolled_back(conn):
        result = _run_gate_statements(conn, phase)
    assert result is not None
    return result


def _record_gate(conn: Conn, result: GateResult, by: str) -> None:
    conn.execute(
        "INSERT INTO conveyor_meta.gate_run (phase, ran_by, passed, items) VALUES (%s, %s, %s, %s)",
        (
            result.phase,
            by,
            result.passed,
            Jsonb([{"item": i.item, "passed": i.passed, "detail": i.detail} for i in result.items]),
        ),
    )


def _objects(conn: Conn) -> set[tuple[str, str]]:
    return set(fingerprint.catalog_fingerprint(conn).keys())


def _check_protected(conn: Conn, phase: Phase, before: dict[str, str]) -> None:
    """Refuse (raise inside the transaction) when a protected definition changed (§12)."""
    if phase.number == 0:
        return  # phase 0 defines the platform, including the protected objects
    after = fingerprint.protected_fingerprint(conn)
    changes = fingerprint.describe_difference(before, after)
    if changes:
        raise DisciplineError(
            f"phase {phase.number} changes protected platform objects ({'; '.join(changes)}); "
            "event_outbox and iu_core.iu_staging_* must never change (ROADMAP §12)"
        )


def _check_dependencies(conn: Conn, phase: Phase) -> None:
    applied = applied_phases(conn)
    for dependency in phase.depends_on:
        if dependency not in applied:
            raise PhaseOrderError(
                f"phase {phase.number} needs phase {dependency}, which is not applied; "
                f"run `conveyor phase apply {dependency}` first"
            )


# ---------------------------------------------------------------------------------------------
# commands


def ratify(conn: Conn, number: int, by: str, note: str | None = None) -> None:
    """Record that *by* approved applying phase *number*."""
    _implemented(number)
    if not by.strip():
        raise PhaseError("ratify needs a name: `conveyor phase ratify N --by NAME`")
    with _locked(conn):
        conn.execute(
            "INSERT INTO conveyor_meta.ratification (phase, ratified_by, note) VALUES (%s, %s, %s)",
            (number, by.strip(), note),
        )


def plan(conn: Conn, number: int) -> PlanResult:
    """Dry run: apply inside a transaction, run the gate, roll everything back."""
    phase = _implemented(number)
    files = _load_checked(phase, ("ddl.up", "data.up"))
    with _locked(conn):
        _check_dependencies(conn, phase)
        if _state(conn, number) == "applied":
            raise PhaseError(f"phase {number} is already applied; nothing to plan")
        result: PlanResult | None = None
        with _rolled_back(conn):
            protected = fingerprint.protected_fingerprint(conn)
            before = _objects(conn)
            _run_file(conn, files["ddl.up"])
            objects = sorted(_objects(conn) - before)
            _run_file(conn, files["data.up"])
            _check_protected(conn, phase, protected)
            _record_objects(conn, phase, objects)
            _capture_snapshot(conn, phase)
            gate = _run_gate_statements(conn, phase)
            result = PlanResult(phase, {k: v.text for k, v in files.items()}, objects, gate)
    assert result is not None
    return result


def _record_objects(conn: Conn, phase: Phase, objects: list[tuple[str, str]]) -> None:
    conn.execute("DELETE FROM conveyor_meta.phase_object WHERE phase = %s", (phase.number,))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO conveyor_meta.phase_object (phase, object_kind, object_name)"
            " VALUES (%s, %s, %s)",
            [(phase.number, kind, name) for kind, name in objects],
        )


def _capture_snapshot(conn: Conn, phase: Phase) -> None:
    conn.execute(
        """
        INSERT INTO conveyor_meta.phase_snapshot (phase, kind, value)
        VALUES (%s, 'outbox', conveyor_meta.fn_outbox_snapshot())
        ON CONFLICT (phase, kind) DO UPDATE SET value = excluded.value, captured_at = now()
        """,
        (phase.number,),
    )


def apply(conn: Conn, number: int, by: str | None = None) -> ApplyResult:
    """Apply phase *number*: DDL file, then data file, each in its own transaction; then verify."""
    phase = _implemented(number)
    who = _who(by)
    files = _load_checked(phase, ("ddl.up", "data.up"))
    result = ApplyResult(phase)
    with _locked(conn):
        state = _state(conn, number)
        if state == "applied":
            changed = _changed_files(conn, phase)
            if changed:
                raise PhaseError(
                    f"phase {number} is applied, but {', '.join(changed)} changed since; the "
                    "runner never re-runs an applied file: roll back (`conveyor phase rollback "
                    f"{number}`) and apply again to take the change"
                )
            result.already_applied = True
            return result
        _check_dependencies(conn, phase)
        if _ratification(conn, number) is None:
            raise PhaseError(
                f"phase {number} is not ratified; run `conveyor phase ratify {number} --by NAME` "
                f"(after `conveyor phase plan {number}`) first"
            )
        if state != "ddl_applied":
            t0 = time.monotonic()
            with conn.transaction():
                _capture_snapshot(conn, phase)
                protected = fingerprint.protected_fingerprint(conn)
                before = _objects(conn)
                _run_file(conn, files["ddl.up"])
                _check_protected(conn, phase, protected)
                result.objects = sorted(_objects(conn) - before)
                _record_objects(conn, phase, result.objects)
                _ledger(conn, phase, "ddl.up", files["ddl.up"], who, t0)
                _set_state(conn, phase, "ddl_applied", who)
            result.files.append("ddl.up.sql")
        t0 = time.monotonic()
        with conn.transaction():
            protected = fingerprint.protected_fingerprint(conn)
            _run_file(conn, files["data.up"])
            _check_protected(conn, phase, protected)
            _ledger(conn, phase, "data.up", files["data.up"], who, t0)
            _set_state(conn, phase, "applied", who)
        result.files.append("data.up.sql")
        result.gate = _gate_in_rolled_back_transaction(conn, phase)
        _record_gate(conn, result.gate, who)
    log.info("phase %s applied by %s", number, who)
    return result


def verify(conn: Conn, number: int, by: str | None = None) -> GateResult:
    """Run phase *number*'s gate (always rolled back), record it, and return the items."""
    phase = _implemented(number)
    with _locked(conn):
        if _state(conn, number) != "applied":
            raise PhaseError(
                f"phase {number} is not applied; run `conveyor phase apply {number}` first"
            )
        result = _gate_in_rolled_back_transaction(conn, phase)
        _record_gate(conn, result, _who(by))
    return result


def verify_or_raise(conn: Conn, number: int, by: str | None = None) -> GateResult:
    """Like verify, raising GateFailed when any item failed."""
    result = verify(conn, number, by)
    if not result.passed:
        raise GateFailed(number, result.failures)
    return result


# ---------------------------------------------------------------------------------------------
# rollback, archive, restore


def _tables(conn: Conn, phase: Phase) -> list[str]:
    rows = conn.execute(
        "SELECT po.object_name FROM conveyor_meta.phase_object AS po"
        " WHERE po.phase = %s AND po.object_kind = 'table' ORDER BY po.object_name",
        (phase.number,),
    ).fetchall()
    return [str(r[0]) for r in rows if _exists(conn, str(r[0]))]


def _exists(conn: Conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,)


def _row_counts(conn: Conn, tables: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        schema, name = table.split(".", 1)
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def rollback(
    conn: Conn, number: int, by: str | None = None, archive: Path | None = None
) -> RollbackResult:
    """Roll phase *number* back: data.down, then ddl.down, each in its own transaction.

    Refuses while a phase that depends on it is applied, and while its tables would still hold
    rows, unless *archive* is given: those rows are then first written there as a psql script.
    """
    phase = _implemented(number)
    who = _who(by)
    files = _load_checked(phase, ("data.down", "ddl.down"))
    with _locked(conn):
        state = _state(conn, number)
        if state not in {"applied", "ddl_applied"}:
            raise PhaseError(f"phase {number} is not applied; nothing to roll back")
        applied = applied_phases(conn) | {
            p.number for p in catalog.PHASES if _state(conn, p.number) == "ddl_applied"
        }
        blocking = [d.number for d in catalog.dependents(number) if d.number in applied]
        if blocking:
            raise PhaseOrderError(
                f"phase {number} cannot be rolled back while phase {blocking[0]} (which depends "
                f"on it) is applied; roll back in reverse order: `conveyor phase rollback "
                f"{blocking[0]}` first"
            )
        holding = _rows_left_after_data_down(conn, phase, files, state, archive)
        if holding and archive is None:
            listing = ", ".join(f"{t} ({n} rows)" for t, n in holding.items())
            raise PhaseError(
                f"phase {number}'s tables still hold rows: {listing}; rollback would drop them. "
                f"Pass `--archive FILE` to write them to FILE first (restore later with "
                "`conveyor phase restore FILE` or psql)"
            )
        if state == "applied":
            t0 = time.monotonic()
            with conn.transaction():
                protected = fingerprint.protected_fingerprint(conn)
                _run_file(conn, files["data.down"])
                _check_protected(conn, phase, protected)
                _ledger(conn, phase, "data.down", files["data.down"], who, t0)
                _set_state(conn, phase, "ddl_applied", who)
        t0 = time.monotonic()
        with conn.transaction():
            tables = _tables(conn, phase)
            for table in tables:  # no row may slip in between the archive and the drop
                schema, name = table.split(".", 1)
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                        sql.Identifier(schema, name)
                    )
                )
            now_counts = _row_counts(conn, tables)
            grown = [t for t, n in now_counts.items() if n > holding.get(t, 0)]
            if grown:
                raise PhaseError(
                    f"rows were written to {', '.join(grown)} during the rollback; nothing was "
                    "dropped: run the rollback again"
                )
            if holding:  # written to the archive above: the down file's guard may drop them
                conn.execute("SET LOCAL conveyor.rollback_rows_archived = 'on'")
            protected = fingerprint.protected_fingerprint(conn)
            _run_file(conn, files["ddl.down"])
            _check_protected(conn, phase, protected)
            _ledger(conn, phase, "ddl.down", files["ddl.down"], who, t0)
            _set_state(conn, phase, "rolled_back", who)
            conn.execute("DELETE FROM conveyor_meta.phase_object WHERE phase = %s", (number,))
    log.info("phase %s rolled back by %s", number, who)
    return RollbackResult(phase, holding, archive if holding else None)


def _rows_left_after_data_down(
    conn: Conn,
    phase: Phase,
    files: dict[str, sqlfile.SqlFile],
    state: str,
    archive_path: Path | None,
) -> dict[str, int]:
    """Tables that would still hold rows once data.down ran, with their counts; measured in a
    rolled-back transaction, which also writes those rows to *archive_path* when given."""
    holding: dict[str, int] = {}
    with _rolled_back(conn):
        if state == "applied":
            _run_file(conn, files["data.down"])
        counts = _row_counts(conn, _tables(conn, phase))
        holding = {t: n for t, n in counts.items() if n}
        if holding and archive_path is not None:
            _write_archive(conn, phase, list(holding), archive_path)
    return holding


def _write_archive(conn: Conn, phase: Phase, tables: list[str], path: Path) -> None:
    """Write the rows of *tables* to *path* as a psql script (atomically: temp file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            archive.write_header(out, phase.number, phase.title, path.name)
            for table in archive.parents_first(conn, tables):
                archive.write_table(conn, table, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def restore(conn: Conn, path: Path) -> dict[str, int]:
    """Load an archive written by `rollback --archive` back into the (re-applied) tables."""
    with _locked(conn):
        return archive.restore(conn, path)


# ---------------------------------------------------------------------------------------------
# report


@dataclass(frozen=True, slots=True)
class ReportObject:
    """One object of the KB report."""

    kind: str
    name: str
    rows: int | None


def report(conn: Conn) -> dict[int, list[ReportObject]]:
    """Per applied phase, the objects it installed (tables with row counts)."""
    bootstrap(conn)
    rows = conn.execute(
        "SELECT po.phase, po.object_kind, po.object_name FROM conveyor_meta.phase_object AS po"
        " ORDER BY po.phase, po.object_kind, po.object_name"
    ).fetchall()
    result: dict[int, list[ReportObject]] = {}
    for phase_number, kind, name in rows:
        count: int | None = None
        if kind == "table" and _exists(conn, str(name)):
            count = _row_counts(conn, [str(name)])[str(name)]
        result.setdefault(int(phase_number), []).append(ReportObject(str(kind), str(name), count))
    return result
