"""Fault-injection tests: real `conveyor worker` / `conveyor orchestrator` processes against a
module database (phases 0–3, substrate and reaper on), and a handle that can crash-restart
whichever PostgreSQL server the session runs on."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from faults.support import Server, cluster_of
from helpers import SEARCH_PATH_OPTION, conveyor_processes, prepare_worker_database, scalar, unique

APP = "faultapp:registry"


@pytest.fixture(scope="module")
def fault_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2, 3), "fault_effect")
    return dsn


@pytest.fixture
def queue() -> str:
    """A queue of this test's own, so committed jobs of other tests never mix in."""
    return unique("f")


@pytest.fixture
def sql(fault_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(fault_dsn, autocommit=True, options=SEARCH_PATH_OPTION) as conn:
        yield conn


@pytest.fixture
def admin(fault_dsn: str) -> Callable[[], psycopg.Connection[Any]]:
    """A fresh autocommit superuser connection (survives what `sql` may not, e.g. a restart)."""

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(
            fault_dsn, autocommit=True, options=SEARCH_PATH_OPTION, connect_timeout=5
        )

    return connect


@pytest.fixture
def start_worker(fault_dsn: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `conveyor worker --app faultapp:registry ARGS…`; *dsn* overrides the database URL."""
    yield from conveyor_processes(
        fault_dsn, tmp_path, ["worker", "--app", APP, "--summary-every", "1"]
    )


@pytest.fixture
def start_orchestrator(fault_dsn: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    yield from conveyor_processes(fault_dsn, tmp_path, ["orchestrator"])


@pytest.fixture(scope="session")
def server(pg_admin_dsn: str) -> Server:
    """The server under test, if this process may restart it; skips the test otherwise."""
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        data_dir = str(scalar(conn, "SHOW data_directory"))
    host = conninfo_to_dict(pg_admin_dsn).get("host") or "localhost"
    if not os.environ.get("CONVEYOR_TEST_DATABASE_URL") and not _url_set():
        return Server("embedded", data_dir)
    cluster = cluster_of(data_dir)
    if cluster is None or os.geteuid() != 0 or host not in ("localhost", "127.0.0.1", "::1"):
        pytest.skip(
            f"cannot restart the server under test (data directory {data_dir} on {host}): "
            "not a local Debian cluster this root process controls"
        )
    return Server("cluster", data_dir, *cluster)


def _url_set() -> bool:
    return any(os.environ.get(n) for n in ("CONVEYOR_DATABASE_URL", "DATABASE_URL"))
