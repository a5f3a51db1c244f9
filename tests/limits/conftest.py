"""Limits tests (phase 8): a module database with phases 0–4 and 8 applied, the job substrate,
the lease reaper and queue.limits.enabled switched on."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import apply_phases, conveyor_processes, prepare_worker_database, set_flag, unique


@pytest.fixture(scope="module")
def limits_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2, 3, 4), "test_effect")
        apply_phases(conn, (8,))
        set_flag(conn, "queue.limits.enabled", True)
    return dsn


@pytest.fixture
def queue() -> str:
    """A queue of this test's own, so committed jobs of other tests never mix in."""
    return unique("q")


@pytest.fixture
def sql(limits_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        limits_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def start_worker(
    limits_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor worker --app workerapp:registry ARGS…` as a subprocess."""
    yield from conveyor_processes(
        limits_dsn,
        tmp_path,
        ["worker", "--app", "workerapp:registry", "--poll-interval", "0.02"],
        verbose=False,
    )
