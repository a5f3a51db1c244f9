"""Small helpers shared by the tests (no queue logic: that lives in the SQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conveyor.phases import runner

SEARCH_PATH_OPTION = "-c search_path=conveyor,public"
APPS = Path(__file__).parent / "apps"  # the handler modules worker processes load


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


def prepare_worker_database(
    conn: psycopg.Connection[Any], phases: Iterable[int], effect_table: str
) -> None:
    """Apply *phases*, switch the substrate and the reaper on, retry without backoff, and create
    public.*effect_table* (job_id, seq) for handlers that leave an effect."""
    apply_phases(conn, phases)
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true'"
        " WHERE key IN ('queue.job_substrate.enabled', 'queue.lease_reaper.enabled')"
    )
    conn.execute(
        "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS public.{} "
            "(id bigserial PRIMARY KEY, job_id bigint NOT NULL, seq integer)"
        ).format(sql.Identifier(effect_table))
    )


def conveyor_processes(
    dsn: str, tmp_path: Path, base: list[str], *, verbose: bool = True
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """For a fixture: a starter of `python -m conveyor [-v] BASE… ARGS…` subprocesses.

    Each gets *dsn* (or the starter's *url*) as CONVEYOR_DATABASE_URL, tests/apps on its
    PYTHONPATH and the starter's *extra_env*, and writes its output to
    tmp_path/<command><n>.log (read it with worker_log).
    Whatever still runs when the test ends is killed.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str, url: str | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": url or dsn,
            "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
            **(extra_env or {}),
        }
        log_path = tmp_path / f"{base[0]}{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *(["-v"] if verbose else []), *base, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def set_flag(conn: psycopg.Connection[Any], key: str, value: Any) -> None:
    """Set a dot_config key directly (tests only; users go through fn_config_set)."""
    conn.execute(
        "UPDATE conveyor.dot_config SET value = %s, updated_at = now() WHERE key = %s",
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
    """Everything a subprocess started by `conveyor_processes` printed so far."""
    return Path(process.log_path).read_text(errors="replace")
