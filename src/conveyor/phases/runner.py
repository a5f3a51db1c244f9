"""The phase runner: status, plan, ratify, apply, verify, rollback and restore.

Governance rules live here (ratification before apply, dependency order, DDL and data in
separate transactions, a ledger row per file, protected objects fingerprinted); the SQL of each
phase lives in its files. Every command serializes on one advisory lock, so two `apply` at once
run one after the other. The ledger and its queries are in ledger.py, gates in gates.py, the KB
report in report.py (their public names are importable from here too).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from conveyor.errors import DisciplineError, GateFailed, PhaseError, PhaseOrderError
from conveyor.phases import archive, catalog, fingerprint, gates, ledger, sqlfile
from conveyor.phases.catalog import Phase
from conveyor.phases.gates import GateItem, GateResult
from conveyor.phases.ledger import applied_phases, bootstrap
from conveyor.phases.report import ReportObject, report
from conveyor.phases.sqlfile import Kind

__all__ = [
    "ApplyResult",
    "GateItem",
    "GateResult",
    "PhaseStatus",
    "PlanResult",
    "ReportObject",
    "RollbackResult",
    "applied_phases",
    "apply",
    "bootstrap",
    "plan",
    "ratify",
    "report",
    "restore",
    "rollback",
    "status",
    "verify",
    "verify_or_raise",
]

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


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


def status(conn: Conn) -> list[PhaseStatus]:
    """One PhaseStatus per phase of the catalog."""
    ledger.bootstrap(conn)
    result: list[PhaseStatus] = []
    for phase in catalog.PHASES:
        state = ledger.state(conn, phase.number) if phase.implemented else "not implemented"
        ratified = ledger.ratification(conn, phase.number)
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
                flags=ledger.flags(conn, phase),
                changed_files=ledger.changed_files(conn, phase) if state == "applied" else (),
            )
        )
    return result


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


def _run_data_file(
    conn: Conn, phase: Phase, name: str, loaded: sqlfile.SqlFile, who: str, state: str
) -> None:
    """Run a data file in its own transaction: protected objects checked, ledger row, new state."""
    t0 = time.monotonic()
    with conn.transaction():
        protected = fingerprint.protected_fingerprint(conn)
        _run_file(conn, loaded)
        _check_protected(conn, phase, protected)
        ledger.record_file(conn, phase, name, loaded, who, t0)
        ledger.set_state(conn, phase, state, who)


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
    applied = ledger.applied_phases(conn)
    for dependency in phase.depends_on:
        if dependency not in applied:
            raise PhaseOrderError(
                f"phase {phase.number} needs phase {dependency}, which is not applied; "
                f"run `conveyor phase apply {dependency}` first"
            )
    for number in sorted(n for n in applied if n < phase.number):
        changed = ledger.changed_files(conn, catalog.get(number))
        if changed:  # a later phase on top would mix two builds' functions and grants
            raise PhaseOrderError(
                f"phase {number} was applied from other files than this conveyor's "
                f"({', '.join(changed)} changed since, e.g. by an upgrade), so phase "
                f"{phase.number} is not applied on top of it: roll back to phase {number} "
                f"(`conveyor phase rollback N --archive FILE` from the last phase down) and apply "
                "again, or start from a fresh database (embedded: `conveyor --data-dir DIR`)"
            )


def ratify(conn: Conn, number: int, by: str, note: str | None = None) -> None:
    """Record that *by* approved applying phase *number*."""
    _implemented(number)
    if not by.strip():
        raise PhaseError("ratify needs a name: `conveyor phase ratify N --by NAME`")
    with ledger.locked(conn):
        conn.execute(
            "INSERT INTO conveyor_meta.ratification (phase, ratified_by, note) VALUES (%s, %s, %s)",
            (number, by.strip(), note),
        )


def plan(conn: Conn, number: int) -> PlanResult:
    """Dry run: apply inside a transaction, run the gate, roll everything back."""
    phase = _implemented(number)
    files = _load_checked(phase, ("ddl.up", "data.up"))
    with ledger.locked(conn):
        _check_dependencies(conn, phase)
        if ledger.state(conn, number) == "applied":
            raise PhaseError(f"phase {number} is already applied; nothing to plan")
        result: PlanResult | None = None
        with ledger.rolled_back(conn):
            protected = fingerprint.protected_fingerprint(conn)
            before = _objects(conn)
            _run_file(conn, files["ddl.up"])
            objects = sorted(_objects(conn) - before)
            _run_file(conn, files["data.up"])
            _check_protected(conn, phase, protected)
            ledger.record_objects(conn, phase, objects)
            ledger.capture_snapshot(conn, phase)
            gate = gates.run(conn, phase)
            result = PlanResult(phase, {k: v.text for k, v in files.items()}, objects, gate)
    assert result is not None
    return result


def apply(conn: Conn, number: int, by: str | None = None) -> ApplyResult:
    """Apply phase *number*: DDL file, then data file, each in its own transaction; then verify."""
    phase = _implemented(number)
    who = ledger.who(by)
    files = _load_checked(phase, ("ddl.up", "data.up"))
    result = ApplyResult(phase)
    with ledger.locked(conn):
        state = ledger.state(conn, number)
        if state == "applied":
            changed = ledger.changed_files(conn, phase)
            if changed:
                raise PhaseError(
                    f"phase {number} is applied, but {', '.join(changed)} changed since; the "
                    "runner never re-runs an applied file: roll back (`conveyor phase rollback "
                    f"{number}`) and apply again to take the change"
                )
            result.already_applied = True
            return result
        _check_dependencies(conn, phase)
        if ledger.ratification(conn, number) is None:
            raise PhaseError(
                f"phase {number} is not ratified; run `conveyor phase ratify {number} --by NAME` "
                f"(after `conveyor phase plan {number}`) first"
            )
        if state != "ddl_applied":
            t0 = time.monotonic()
            with conn.transaction():
                ledger.capture_snapshot(conn, phase)
                protected = fingerprint.protected_fingerprint(conn)
                before = _objects(conn)
                _run_file(conn, files["ddl.up"])
                _check_protected(conn, phase, protected)
                result.objects = sorted(_objects(conn) - before)
                ledger.record_objects(conn, phase, result.objects)
                ledger.record_file(conn, phase, "ddl.up", files["ddl.up"], who, t0)
                ledger.set_state(conn, phase, "ddl_applied", who)
            result.files.append("ddl.up.sql")
        _run_data_file(conn, phase, "data.up", files["data.up"], who, "applied")
        result.files.append("data.up.sql")
        result.gate = gates.run_rolled_back(conn, phase)
        ledger.record_gate(conn, result.gate, who)
    log.info("phase %s applied by %s", number, who)
    return result


def verify(conn: Conn, number: int, by: str | None = None) -> GateResult:
    """Run phase *number*'s gate (always rolled back), record it, and return the items."""
    phase = _implemented(number)
    with ledger.locked(conn):
        if ledger.state(conn, number) != "applied":
            raise PhaseError(
                f"phase {number} is not applied; run `conveyor phase apply {number}` first"
            )
        result = gates.run_rolled_back(conn, phase)
        ledger.record_gate(conn, result, ledger.who(by))
    return result


def verify_or_raise(conn: Conn, number: int, by: str | None = None) -> GateResult:
    """Like verify, raising GateFailed when any item failed."""
    result = verify(conn, number, by)
    if not result.passed:
        raise GateFailed(number, result.failures)
    return result


def rollback(
    conn: Conn, number: int, by: str | None = None, archive: Path | None = None
) -> RollbackResult:
    """Roll phase *number* back: data.down, then ddl.down, each in its own transaction.

    Refuses while a phase that depends on it is applied, and while its tables would still hold
    rows, unless *archive* is given: those rows are then first written there as a psql script.
    """
    phase = _implemented(number)
    who = ledger.who(by)
    files = _load_checked(phase, ("data.down", "ddl.down"))
    with ledger.locked(conn):
        state = ledger.state(conn, number)
        if state not in {"applied", "ddl_applied"}:
            raise PhaseError(f"phase {number} is not applied; nothing to roll back")
        applied = ledger.applied_phases(conn) | {
            p.number for p in catalog.PHASES if ledger.state(conn, p.number) == "ddl_applied"
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
            _run_data_file(conn, phase, "data.down", files["data.down"], who, "ddl_applied")
        t0 = time.monotonic()
        with conn.transaction():
            tables = ledger.phase_tables(conn, phase)
            for table in tables:  # no row may slip in between the archive and the drop
                schema, name = table.split(".", 1)
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                        sql.Identifier(schema, name)
                    )
                )
            now_counts = ledger.row_counts(conn, tables)
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
            ledger.record_file(conn, phase, "ddl.down", files["ddl.down"], who, t0)
            ledger.set_state(conn, phase, "rolled_back", who)
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
    with ledger.rolled_back(conn):
        if state == "applied":
            _run_file(conn, files["data.down"])
        counts = ledger.row_counts(conn, ledger.phase_tables(conn, phase))
        holding = {t: n for t, n in counts.items() if n}
        if holding and archive_path is not None:
            archive.write(conn, phase.number, phase.title, list(holding), archive_path)
    return holding


def restore(conn: Conn, path: Path) -> dict[str, int]:
    """Load an archive written by `rollback --archive` back into the (re-applied) tables."""
    with ledger.locked(conn):
        return archive.restore(conn, path)
