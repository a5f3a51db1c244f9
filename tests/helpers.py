"""Small helpers shared by the tests (no queue logic: that lives in the SQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conveyor.phases import runner

SEARCH_PATH_OPTION = "-c search_path=conveyor,public"


def scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """First column of the first row of *query*."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, "query returned no row"
    return row[0]


def unique(prefix: str) -> str:
    """*prefix* made unique (queue, kind and component names of one test)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def apply_phase(conn: psycopg.Connection[Any], number: int) -> runner.ApplyResult:
    """Ratify and apply phase *number* on *conn* (autocommit), as the tests do."""
    runner.ratify(conn, number, "tests")
    return runner.apply(conn, number, "tests")


def apply_phases(conn: psycopg.Connection[Any], numbers: Iterable[int]) -> None:
    """Ratify and apply *numbers* in order on *conn* (autocommit); each gate must pass."""
    for number in numbers:
        result = apply_phase(conn, number)
        assert result.already_applied or (result.gate is not None and result.gate.passed), (
            result.gate.failures if result.gate else "no gate run"
        )


def set_flag(conn: psycopg.Connection[Any], key: str, value: Any) -> None:
    """Set a dot_config key directly (tests only; users go through fn_config_set)."""
    conn.execute(
        "UPDATE conveyor.dot_config SET value = %s WHERE key = %s",
        (Jsonb(value), key),
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll *predicate* until it returns a truthy value; fail the test after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def with_database(dsn: str, dbname: str) -> str:
    """*dsn* pointed at another database."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


def worker_log(process: Any) -> str:
    """Everything a worker subprocess started by the worker tests printed so far."""
    from pathlib import Path

    return Path(process.log_path).read_text(errors="replace")
