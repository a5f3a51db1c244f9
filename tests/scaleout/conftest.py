"""Scale-out tests: a transaction-pooling PgBouncer started for the session in front of the test
server (the embedded one or CI's), and a module database with phases 0–4 applied."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import conveyor_processes, prepare_worker_database, unique
from scaleout.pgbouncer import PgBouncer, available


@pytest.fixture(scope="session")
def bouncer(pg_admin_dsn: str) -> Iterator[PgBouncer]:
    """PgBouncer on a free loopback port; its files in a /tmp directory its user can reach."""
    if not available():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="conveyor-pgbouncer-", dir="/tmp"))
    server = PgBouncer(pg_admin_dsn, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def direct_dsn(dsn: str) -> str:
    """The module database, straight to the server, with phases 0–4 and the effect table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2, 3, 4), "test_effect")
    return dsn


@pytest.fixture(scope="module")
def pooled_dsn(direct_dsn: str, bouncer: PgBouncer) -> str:
    """The same database through PgBouncer (pool_mode = transaction)."""
    return bouncer.url_for(direct_dsn)


@pytest.fixture
def queue() -> str:
    return unique("q")


@pytest.fixture
def sql(direct_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection for the test's own checks (search_path conveyor, public)."""
    with psycopg.connect(
        direct_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def start_worker(
    pooled_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor -v worker --app workerapp:registry ARGS…` through the pooler."""
    yield from conveyor_processes(
        pooled_dsn, tmp_path, ["worker", "--app", "workerapp:registry", "--poll-interval", "0.05"]
    )


@pytest.fixture
def start_orchestrator(
    pooled_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor -v orchestrator ARGS…` through the pooler."""
    yield from conveyor_processes(pooled_dsn, tmp_path, ["orchestrator"])
