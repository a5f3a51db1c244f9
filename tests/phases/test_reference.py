"""docs/sql-reference.md is generated from the catalog and must match what the phases install."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.phases import catalog
from conveyor.reference import render
from helpers import apply_phases

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "sql-reference.md"


@pytest.fixture
def all_phases(empty_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a database with every implemented phase applied."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        apply_phases(conn, [phase.number for phase in catalog.PHASES if phase.implemented])
        yield conn


def test_the_sql_reference_matches_the_installed_catalog(all_phases) -> None:
    assert render(all_phases) == REFERENCE.read_text(encoding="utf-8"), (
        "docs/sql-reference.md is out of date: run `python scripts/sql_reference.py`"
    )


def test_every_public_function_documents_itself(all_phases) -> None:
    missing = all_phases.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('conveyor', 'iu_core') AND p.prokind = 'f'"
        "   AND obj_description(p.oid, 'pg_proc') IS NULL"
    ).fetchall()
    assert missing == []


_PUBLIC_FUNCTIONS = """
    SELECT p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
      FROM pg_proc AS p
      JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname IN ('conveyor', 'iu_core') AND p.prokind = 'f'
       AND p.proname NOT LIKE '%\\_\\_%'
       AND p.prorettype <> 'trigger'::regtype
       AND obj_description(p.oid, 'pg_proc') NOT LIKE 'Private:%'
     ORDER BY 1
"""


def test_every_public_function_gives_a_psql_example_that_calls_it(all_phases) -> None:
    functions = all_phases.execute(_PUBLIC_FUNCTIONS).fetchall()
    assert len(functions) > 40
    without = [signature for signature, comment in functions if "Example: " not in comment]
    assert without == []

    uncallable = []
    for signature, comment in functions:
        example = comment.split("Example: ", 1)[1].split(" → ", 1)[0]  # → shows its answer
        try:
            with all_phases.transaction(force_rollback=True):
                all_phases.execute(example.encode())
        except psycopg.Error as error:
            # Class 42 (a typo, a wrong argument name or type, an unknown function) or a literal
            # that does not cast means the example is wrong; any other error is the function
            # answering the example's made-up input (job 42 does not exist), which is fine.
            if (error.sqlstate or "").startswith("42") or error.sqlstate == "22P02":
                uncallable.append(f"{signature}: {example}: {error}")
    assert not uncallable, "\n".join(uncallable)
