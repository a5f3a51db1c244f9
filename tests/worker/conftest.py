"""Worker tests run real `conveyor worker` processes against a module database with phases 0–4
applied and the job substrate and lease reaper switched on."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import conveyor_processes, prepare_worker_database, unique


@pytest.fixture(scope="module")
def worker_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2, 3, 4), "test_effect")
    return dsn


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own, so committed jobs of other tests never mix in."""
    return unique("q")


@pytest.fixture
def sql(worker_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        worker_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def start_worker(
    worker_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor worker --app workerapp:registry ARGS…` as a subprocess."""
    yield from conveyor_processes(
        worker_dsn,
        tmp_path,
        [
            "worker",
            "--app",
            "workerapp:registry",
            "--poll-interval",
            "0.05",
            "--summary-every",
            "5",
        ],
    )


@pytest.fixture
def start_quiet_worker(
    worker_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`start_worker` at the default log level (WARNING), as a user runs it."""
    yield from conveyor_processes(
        worker_dsn,
        tmp_path,
        ["worker", "--app", "workerapp:registry", "--poll-interval", "0.05"],
        verbose=False,
    )


@pytest.fixture
def start_orchestrator(
    worker_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor orchestrator ARGS…` as a subprocess."""
    yield from conveyor_processes(worker_dsn, tmp_path, ["orchestrator"])
