"""Limits against real worker processes (phase 8): a queue cap and a key cap are never exceeded,
sampled while two worker processes drain and checked after the fact from claim and finish times;
a SIGKILLed worker's limited slots come back when its leases are reaped, not before."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from helpers import scalar, wait_until

Conn = psycopg.Connection[Any]
Start = Callable[..., subprocess.Popen[bytes]]


def enqueue_sleeps(sql: Conn, queue: str, count: int, seconds: float, keys: int = 0) -> None:
    sql.execute(
        "INSERT INTO job_queue (queue, kind, payload, status, run_at, concurrency_key)"
        " SELECT %s, 'test.sleep', jsonb_build_object('seconds', %s::float), 'queued', now(),"
        "        CASE WHEN %s > 0 THEN 'k' || (g %% %s) END"
        "   FROM generate_series(1, %s) AS g",
        (queue, seconds, keys, max(keys, 1), count),
    )


def max_overlap(intervals: list[tuple[Any, Any]]) -> int:
    """Most intervals open at one instant (an interval ending at t is closed before one opening
    at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


class Sampler:
    """Counts the queue's in-progress jobs (per key too) every ~10 ms on a connection of its own."""

    def __init__(self, dsn: str, queue: str) -> None:
        self.queue = queue
        self.dsn = dsn
        self.peak = 0
        self.key_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(0.01):
                row = conn.execute(
                    "SELECT count(*), coalesce(max(n), 0) FROM ("
                    "  SELECT jq.concurrency_key, count(*) AS n FROM conveyor.job_queue AS jq"
                    "   WHERE jq.queue = %s AND jq.status = 'in_progress'"
                    "   GROUP BY jq.concurrency_key) AS k, LATERAL (SELECT 1) AS one",
                    (self.queue,),
                ).fetchone()
                total = scalar(
                    conn,
                    "SELECT count(*) FROM conveyor.job_queue"
                    " WHERE queue = %s AND status = 'in_progress'",
                    (self.queue,),
                )
                assert row is not None
                self.peak = max(self.peak, int(total))
                self.key_peak = max(self.key_peak, int(row[1]))
                self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def drain(sql: Conn, queue: str, start_worker: Start, count: int) -> None:
    for _ in range(2):
        start_worker("--queue", queue, "--concurrency", "25")
    wait_until(
        lambda: (
            scalar(
                sql,
                "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'",
                (queue,),
            )
            == count
        ),
        timeout=240,
        interval=0.2,
    )


def intervals(sql: Conn, queue: str, key: str | None = None) -> list[tuple[Any, Any]]:
    return sql.execute(
        "SELECT started_at, finished_at FROM job_queue"
        " WHERE queue = %s AND status = 'succeeded'"
        "   AND (%s::text IS NULL OR concurrency_key = %s)",
        (queue, key, key),
    ).fetchall()


def test_a_cap_of_five_is_never_exceeded_by_two_worker_processes(
    sql: Conn, limits_dsn: str, queue: str, start_worker: Start
) -> None:
    enqueue_sleeps(sql, queue, 200, 0.02)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 5)", (queue,))

    with Sampler(limits_dsn, queue) as sampler:
        drain(sql, queue, start_worker, 200)

    assert sampler.samples > 0
    assert 1 <= sampler.peak <= 5
    assert max_overlap(intervals(sql, queue)) <= 5


def test_a_key_cap_of_one_never_runs_two_jobs_of_a_key_at_once(
    sql: Conn, limits_dsn: str, queue: str, start_worker: Start
) -> None:
    enqueue_sleeps(sql, queue, 150, 0.02, keys=5)
    scalar(sql, "SELECT fn_job_key_limit(%s, NULL, max_in_progress => 1)", (queue,))

    with Sampler(limits_dsn, queue) as sampler:
        drain(sql, queue, start_worker, 150)

    assert sampler.key_peak <= 1
    for n in range(5):
        assert max_overlap(intervals(sql, queue, f"k{n}")) <= 1


def test_a_killed_workers_slots_come_back_when_its_leases_are_reaped_not_before(
    sql: Conn, queue: str, start_worker: Start
) -> None:
    enqueue_sleeps(sql, queue, 4, 600)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 2)", (queue,))
    worker = start_worker("--queue", queue, "--concurrency", "4", "--lease-seconds", "3")
    in_progress = "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'in_progress'"
    wait_until(lambda: scalar(sql, in_progress, (queue,)) == 2, timeout=60)

    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    wait_until(
        lambda: scalar(
            sql,
            "SELECT bool_and(lease_expires_at < now()) FROM job_queue"
            " WHERE queue = %s AND status = 'in_progress'",
            (queue,),
        ),
        timeout=60,
    )
    claim = "SELECT fn_job_claim(worker => 'w2', queues => ARRAY[%s], batch => 4)"
    assert scalar(sql, claim, (queue,))["jobs"] == []  # expired, not reaped: still counted

    scalar(sql, "SELECT fn_job_lease_reaper()")

    assert len(scalar(sql, claim, (queue,))["jobs"]) == 2
