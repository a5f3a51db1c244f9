"""The KB report: per applied phase, the objects it installed, tables with their row counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from conveyor.phases import ledger

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class ReportObject:
    """One object of the KB report."""

    kind: str
    name: str
    rows: int | None


def report(conn: Conn) -> dict[int, list[ReportObject]]:
    """Per applied phase, the objects it installed (tables with row counts)."""
    ledger.bootstrap(conn)
    rows = conn.execute(
        "SELECT po.phase, po.object_kind, po.object_name FROM conveyor_meta.phase_object AS po"
        " ORDER BY po.phase, po.object_kind, po.object_name"
    ).fetchall()
    result: dict[int, list[ReportObject]] = {}
    for phase_number, kind, name in rows:
        count: int | None = None
        if kind == "table" and ledger.table_exists(conn, str(name)):
            count = ledger.row_counts(conn, [str(name)])[str(name)]
        result.setdefault(int(phase_number), []).append(ReportObject(str(kind), str(name), count))
    return result


def summary(objects: Iterable[ReportObject]) -> str:
    """Counts by kind, in words: ``2 functions, 3 indexes, 1 table``."""
    counts = Counter(item.kind for item in objects)
    return ", ".join(f"{n} {_plural(kind, n)}" for kind, n in sorted(counts.items()))


def _plural(kind: str, n: int) -> str:
    if n == 1:
        return kind
    return f"{kind}es" if kind.endswith(("x", "s", "sh", "ch")) else f"{kind}s"
