"""Worker tests run real `conveyor worker` processes against a module database with phases 0–4
applied and the job substrate and lease reaper switched on."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import apply_phases

APPS = Path(__file__).parent.parent / "apps"


@pytest.fixture(scope="module")
def worker_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3, 4))
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true'"
            " WHERE key IN ('queue.job_substrate.enabled', 'queue.lease_reaper.enabled')"
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.test_effect"
            " (id bigserial PRIMARY KEY, job_id bigint NOT NULL, seq integer)"
        )
    return dsn


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own, so committed jobs of other tests never mix in."""
    return f"q{uuid.uuid4().hex[:10]}"


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
    yield from _starter(
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
    yield from _starter(
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
    yield from _starter(worker_dsn, tmp_path, ["orchestrator"])


def _starter(
    dsn: str, tmp_path: Path, base: list[str], *, verbose: bool = True
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": dsn,
            "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
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
