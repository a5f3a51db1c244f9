"""What the limits tests with worker processes share: jobs that sleep, a sampler of jobs in
progress, and the intervals of finished jobs with their most-at-once."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from helpers import scalar

Conn = psycopg.Connection[Any]


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


def intervals(sql: Conn, queue: str, key: str | None = None) -> list[tuple[Any, Any]]:
    return sql.execute(
        "SELECT started_at, finished_at FROM job_queue"
        " WHERE queue = %s AND status = 'succeeded'"
        "   AND (%s::text IS NULL OR concurrency_key = %s)",
        (queue, key, key),
    ).fetchall()
