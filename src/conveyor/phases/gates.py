"""Gates: a phase's gate.sql run inside a transaction the runner supplies (and rolls back),
read as (item, passed, detail) rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from conveyor.errors import DisciplineError, PhaseError
from conveyor.phases import ledger, sqlfile
from conveyor.phases.catalog import Phase
from conveyor.phases.sqlfile import Kind

Conn = psycopg.Connection[Any]


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


def _statements(phase: Phase) -> list[sqlfile.Statement]:
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


def run(conn: Conn, phase: Phase) -> GateResult:
    """Run the gate inside the caller's transaction; return the last (item, passed, detail) set."""
    rows: list[tuple[Any, ...]] = []
    for statement in _statements(phase):
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


def run_rolled_back(conn: Conn, phase: Phase) -> GateResult:
    result: GateResult | None = None
    with ledger.rolled_back(conn):
        result = run(conn, phase)
    assert result is not None
    return result
