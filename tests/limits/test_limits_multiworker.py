"""Limits in the issue's shape: 8 workers × 50 slots on 2 processes (tests/apps/multiworker.py
runs 4 Worker objects in each). A queue cap of 5 and a key cap of 1 are never exceeded (sampled
every ~10 ms, and checked after the fact from claim and finish times), and a rate of 100 per
second never lets more jobs start between two claims than the bucket allows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import APPS, scalar, wait_until
from limits.support import Sampler, enqueue_sleeps, intervals, max_overlap

Conn = psycopg.Connection[Any]
Start = Callable[[str], None]


@pytest.fixture
def start_processes(limits_dsn: str, tmp_path: Path) -> Iterator[Start]:
    """Start two multiworker processes (4 workers × 50 slots each) on a queue; they are
    stopped (SIGTERM, then killed) when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str) -> None:
        env = {**os.environ, "CONVEYOR_DATABASE_URL": limits_dsn, "PYTHONPATH": str(APPS)}
        for n in range(2):
            with (tmp_path / f"multiworker{n}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(APPS / "multiworker.py"),
                            "--queue",
                            queue,
                            "--workers",
                            "4",
                            "--concurrency",
                            "50",
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    yield start
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def drained(sql: Conn, queue: str, count: int) -> bool:
    done = "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'"
    return bool(scalar(sql, done, (queue,)) == count)


def test_a_cap_of_five_is_never_exceeded_by_eight_workers_of_fifty_slots_on_two_processes(
    sql: Conn, limits_dsn: str, queue: str, start_processes: Start
) -> None:
    enqueue_sleeps(sql, queue, 300, 0.02)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 5)", (queue,))

    with Sampler(limits_dsn, queue) as sampler:
        start_processes(queue)
        wait_until(lambda: drained(sql, queue, 300), timeout=240, interval=0.2)

    assert sampler.samples > 0
    assert 1 <= sampler.peak <= 5
    assert max_overlap(intervals(sql, queue)) <= 5


def test_a_key_cap_of_one_never_runs_two_jobs_of_a_key_at_once_on_eight_workers(
    sql: Conn, limits_dsn: str, queue: str, start_processes: Start
) -> None:
    enqueue_sleeps(sql, queue, 200, 0.02, keys=8)
    scalar(sql, "SELECT fn_job_key_limit(%s, NULL, max_in_progress => 1)", (queue,))

    with Sampler(limits_dsn, queue) as sampler:
        start_processes(queue)
        wait_until(lambda: drained(sql, queue, 200), timeout=240, interval=0.2)

    assert sampler.key_peak <= 1
    for n in range(8):
        assert max_overlap(intervals(sql, queue, f"k{n}")) <= 1


def test_a_rate_of_100_per_second_is_never_exceeded_by_eight_workers(
    sql: Conn, queue: str, start_processes: Start
) -> None:
    enqueue_sleeps(sql, queue, 300, 0)
    scalar(sql, "SELECT fn_job_queue_limit(%s, rate => 100, per_seconds => 1)", (queue,))

    start_processes(queue)
    wait_until(lambda: drained(sql, queue, 300), timeout=240, interval=0.2)

    # Claims with a rate take the queue's row lock, read the bucket at clock_timestamp() (v)
    # and stamp started_at (s) just after, then commit; the next claim reads the clock only
    # once it has the lock, so v(k) ≤ s(k) < v(k+1). Between claims i and j the bucket can
    # hand out at most its burst (5 % of a second's 100 = 5) plus 100 per second of
    # v(j) − v(i) ≤ s(j) − s(i−1): an exact bound, whatever the load.
    claims = sql.execute(
        "SELECT extract(epoch FROM started_at)::float8, count(*) FROM job_queue"
        " WHERE queue = %s GROUP BY started_at ORDER BY started_at",
        (queue,),
    ).fetchall()
    assert sum(n for _, n in claims) == 300
    starts = [at for at, _ in claims]
    worst = 0.0
    for i in range(1, len(claims)):
        taken = 0
        for j in range(i, len(claims)):
            taken += claims[j][1]
            worst = max(worst, taken - (5 + 100 * (starts[j] - starts[i - 1])))
    # (unlimited, the 300 would start within a few claims, far over this bound)
    assert worst <= 1e-6, f"{worst:.3f} more jobs started in a window than the rate allows"
