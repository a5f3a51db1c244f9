"""Limits against real worker processes (phase 8): a queue cap and a key cap are never exceeded,
sampled while two worker processes drain and checked after the fact from claim and finish times;
a SIGKILLed worker's limited slots come back when its leases are reaped, not before."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg

from helpers import scalar, wait_until
from limits.support import Sampler, enqueue_sleeps, intervals, max_overlap

Conn = psycopg.Connection[Any]
Start = Callable[..., subprocess.Popen[bytes]]


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


def test_a_worker_held_back_by_a_rate_claims_again_when_the_bucket_refills_not_at_its_poll(
    sql: Conn, queue: str, start_worker: Start
) -> None:
    # 20 per second with a burst of 1: each claim takes one job and answers when the next is due
    # (limit_wait_seconds, ~0.05 s). A worker polling every 30 s that ignored it would take
    # 30 s per job after the first; following it, the 20 jobs take about a second.
    enqueue_sleeps(sql, queue, 20, 0)
    scalar(sql, "SELECT fn_job_queue_limit(%s, rate => 20, per_seconds => 1)", (queue,))
    start_worker("--queue", queue, "--concurrency", "5", "--poll-interval", "30")
    done = "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'"

    wait_until(lambda: scalar(sql, done, (queue,)) == 20, timeout=90, interval=0.2)

    first, last = sql.execute(
        "SELECT min(started_at), max(started_at) FROM job_queue WHERE queue = %s", (queue,)
    ).fetchone() or (None, None)
    assert first is not None and last is not None
    # and the rate held: past the burst (1) and the job whose start stamp trails its claim's
    # bucket reading, 18 jobs needed 18 / 20 s of refills
    assert (last - first).total_seconds() >= 18 / 20
