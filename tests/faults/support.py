"""Shared by the fault tests: invariant checks (plain SQL on the test's own queue) and a handle
that restarts the server under test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from helpers import scalar

Connect = Callable[[], psycopg.Connection[Any]]
Start = Callable[..., "subprocess.Popen[bytes]"]


def statuses(sql: psycopg.Connection[Any], queue: str) -> dict[str, int]:
    rows = sql.execute(
        "SELECT status, count(*) FROM job_queue WHERE queue = %s GROUP BY status", (queue,)
    ).fetchall()
    return {str(s): int(n) for s, n in rows}


def assert_each_effect_exactly_once(sql: psycopg.Connection[Any], queue: str, total: int) -> None:
    """Every job of *queue* succeeded and left exactly one effect row; none is missing."""
    found = statuses(sql, queue)
    assert found == {"succeeded": total}, found
    doubled = sql.execute(
        "SELECT e.job_id, count(*) FROM public.fault_effect AS e"
        " JOIN job_queue AS j ON j.id = e.job_id WHERE j.queue = %s"
        " GROUP BY e.job_id HAVING count(*) <> 1",
        (queue,),
    ).fetchall()
    assert doubled == [], doubled
    seqs = scalar(
        sql,
        "SELECT count(DISTINCT e.seq) FROM public.fault_effect AS e"
        " JOIN job_queue AS j ON j.id = e.job_id WHERE j.queue = %s",
        (queue,),
    )
    assert seqs == total, seqs


def backend_pids(sql: psycopg.Connection[Any], application_name: str) -> list[int]:
    rows = sql.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
        (application_name,),
    ).fetchall()
    return [int(r[0]) for r in rows]


def terminate(sql: psycopg.Connection[Any], application_name: str) -> list[int]:
    """pg_terminate_backend every session named *application_name*; return their pids."""
    pids = backend_pids(sql, application_name)
    for pid in pids:
        sql.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return pids


def enqueue_effects(
    sql: psycopg.Connection[Any], queue: str, count: int, sleep: float = 0.0
) -> None:
    """*count* fault.effect jobs on *queue* (payload seq 0…count-1)."""
    jobs = [
        {"kind": "fault.effect", "queue": queue, "payload": {"seq": i, "sleep": sleep}}
        for i in range(count)
    ]
    answer = scalar(sql, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(jobs),))
    assert answer.get("ok", True), answer


def assert_nothing_half_transitioned(sql: psycopg.Connection[Any], queue: str) -> None:
    """Each row is wholly in one state: no lease while queued, an effect iff succeeded."""
    odd = sql.execute(
        "SELECT j.id, j.status, j.lease_token IS NOT NULL, (SELECT count(*)"
        "   FROM public.fault_effect AS e WHERE e.job_id = j.id)"
        "  FROM job_queue AS j WHERE j.queue = %s AND NOT ("
        "   (j.status = 'in_progress' AND j.lease_token IS NOT NULL"
        "     AND j.lease_expires_at IS NOT NULL)"
        "   OR (j.status = 'queued' AND j.lease_token IS NULL) OR j.status = 'succeeded')",
        (queue,),
    ).fetchall()
    assert odd == [], odd
    mismatched = sql.execute(
        "SELECT j.id, j.status FROM job_queue AS j WHERE j.queue = %s"
        " AND (j.status = 'succeeded') <> EXISTS"
        "     (SELECT 1 FROM public.fault_effect AS e WHERE e.job_id = j.id)",
        (queue,),
    ).fetchall()
    assert mismatched == [], mismatched


@dataclass(frozen=True)
class Server:
    """Restarts the server under test: the machine's cluster (pg_ctlcluster) or the embedded one."""

    kind: str  # "cluster" | "embedded"
    data_dir: str
    version: str = ""
    cluster: str = ""

    def restart(self, mode: str = "immediate") -> None:
        if self.kind == "cluster":
            subprocess.run(
                [
                    "pg_ctlcluster",
                    "--skip-systemctl-redirect",
                    self.version,
                    self.cluster,
                    "restart",
                    "-m",
                    mode,
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            return
        from conveyor.embedded import EmbeddedServer

        handle = EmbeddedServer(Path(self.data_dir))  # a second handle: attaches, never stops it
        handle.start()
        try:
            handle.restart(mode)
        finally:
            handle.stop()


def cluster_of(data_dir: str) -> tuple[str, str] | None:
    """(version, name) of the Debian cluster whose data directory is *data_dir*."""
    if shutil.which("pg_lsclusters") is None:
        return None
    out = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and os.path.realpath(fields[5]) == os.path.realpath(data_dir):
            return fields[0], fields[1]
    return None
