"""Pilot tests run real `conveyor worker --executor agent` and `conveyor orchestrator` processes
against a module database with phases 0–5 applied and the job substrate, lease reaper, dispatch
and pilot switched on (retries without backoff)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.phases import runner

HERE = Path(__file__).parent

FLAGS_ON = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "queue.dispatch.enabled",
    "pilot.cut.enabled",
)


@pytest.fixture(scope="module")
def pilot_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 5):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS_ON),)
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
    return dsn


@pytest.fixture
def sql(pilot_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        pilot_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def start_worker(
    pilot_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor worker --executor agent --app APP ARGS…` (default app: the pilot's)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, app: str = "conveyor.pilot:registry") -> subprocess.Popen[bytes]:
        command = ["worker", "--executor", "agent", "--app", app, "--poll-interval", "0.05"]
        return _start(pilot_dsn, tmp_path, started, [*command, *args])

    yield start
    _stop(started)


@pytest.fixture
def start_orchestrator(
    pilot_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor orchestrator --interval 0.2` (dispatch and the lease reaper)."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        return _start(pilot_dsn, tmp_path, started, ["orchestrator", "--interval", "0.2"])

    yield start
    _stop(started)


def _start(
    dsn: str, tmp_path: Path, started: list[subprocess.Popen[bytes]], args: list[str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": dsn,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    log_path = tmp_path / f"{args[0]}{len(started)}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "-v", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    started.append(process)
    return process


def _stop(started: list[subprocess.Popen[bytes]]) -> None:
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
