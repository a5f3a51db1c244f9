"""Helpers of the console tests: the test users, CSRF tokens from pages, jobs and dead letters."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

PASSWORDS = {"alice": "alice-password", "rita": "rita-password"}
METRICS_TOKEN = "metrics-token-for-tests"
SECRET_MARKER = "PAYLOAD-SECRET-7f3a"
APPS = Path(__file__).parent.parent / "apps"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def enqueue(
    conn: psycopg.Connection[Any],
    queue: str,
    kind: str = "test.noop",
    payload: dict[str, Any] | None = None,
) -> int:
    row = conn.execute(
        "SELECT fn_job_enqueue(kind => %s, payload => %s, queue => %s)",
        (kind, Jsonb(payload or {"secret": SECRET_MARKER}), queue),
    ).fetchone()
    assert row is not None
    return int(row[0]["job_id"])


def dead_letter(conn: psycopg.Connection[Any], queue: str, kind: str = "test.noop") -> int:
    """Enqueue, claim and permanently fail one job on *queue* (which must have no other queued
    job, as the claim takes the oldest); the id of its dead letter."""
    job_id = enqueue(conn, queue, kind)
    claimed = conn.execute(
        "SELECT fn_job_claim(worker => 'tests', queues => ARRAY[%s])", (queue,)
    ).fetchone()
    assert claimed is not None
    (job,) = [j for j in claimed[0]["jobs"] if j["job_id"] == job_id]
    conn.execute(
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => 'boom: bad input')",
        (job_id, job["lease_token"]),
    )
    row = conn.execute(
        "SELECT dl.id FROM job_dead_letter AS dl WHERE dl.job_id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def start_worker(dsn: str, log_path: Path, *queues: str) -> subprocess.Popen[bytes]:
    """A real `conveyor worker` process (tests/apps/workerapp.py) claiming from *queues*."""
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": dsn,
        "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
    }
    queue_args = [arg for queue in queues for arg in ("--queue", queue)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "worker",
                "--app",
                "workerapp:registry",
                "--poll-interval",
                "0.05",
                *queue_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def job_status(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM job_queue WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row[0])
