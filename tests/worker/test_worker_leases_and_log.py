"""What a worker leaves to the database (the lease length) and what it tells its operator at the
default log level: each failed attempt with its error, and its final counters as one line."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.errors import InvalidInput
from conveyor.handlers import JobContext, Registry
from conveyor.worker import Worker, WorkerConfig
from helpers import scalar, set_flag, wait_until, worker_log


def enqueue(sql: psycopg.Connection[Any], kind: str, queue: str, **payload: Any) -> int:
    answer = scalar(
        sql,
        "SELECT fn_job_enqueue(kind => %s, payload => %s, queue => %s, max_attempts => 2)",
        (kind, Jsonb(payload), queue),
    )
    assert answer.get("ok"), answer
    return int(answer["job_id"])


def test_a_worker_without_lease_seconds_takes_the_lease_length_from_the_database(
    sql, queue, worker_dsn: str
) -> None:
    leases: list[float | None] = []
    registry = Registry()

    @registry.handler("test.long")
    async def long(job: JobContext) -> None:
        leases.append(job.job.lease_seconds)
        await asyncio.sleep(6)  # longer than the lease: it lives only if renewed

    set_flag(sql, "queue.lease.default_seconds", 4)
    try:
        job_id = enqueue(sql, "test.long", queue)
        worker = Worker(registry, worker_dsn, WorkerConfig(queues=(queue,), poll_interval=0.05))
        thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
        thread.start()
        try:
            wait_until(lambda: leases, timeout=20)
            rescued = 0
            while scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (job_id,)) == (
                "in_progress"
            ):
                rescued += int(scalar(sql, "SELECT fn_job_lease_reaper()")["rescued"])
                time.sleep(0.1)
        finally:
            worker.stop()
            thread.join(timeout=60)
    finally:
        set_flag(sql, "queue.lease.default_seconds", 60)
    assert leases == [4.0]
    assert rescued == 0
    assert sql.execute(
        "SELECT status, attempts FROM job_queue WHERE id = %s", (job_id,)
    ).fetchone() == ("succeeded", 1)


def test_failed_attempts_and_the_final_counters_are_readable_at_the_default_log_level(
    sql, queue, start_quiet_worker
) -> None:
    flaky = enqueue(sql, "test.fail", queue, secret="payload-must-not-be-logged")
    doomed = enqueue(sql, "test.fail_permanent", queue, secret="payload-must-not-be-logged")
    worker = start_quiet_worker("--queue", queue)
    wait_until(
        lambda: (
            scalar(
                sql,
                "SELECT count(*) FROM job_dead_letter WHERE job_id = ANY(%s)",
                ([flaky, doomed],),
            )
            == 2
        ),
        timeout=30,
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker_log(worker)

    log = worker_log(worker)
    assert re.search(
        rf"WARNING .*job {flaky} \(test.fail\) failed on attempt 1 of 2: "
        r"RuntimeError: this handler always fails; will retry at ",
        log,
    ), log
    assert re.search(
        rf"WARNING .*job {flaky} \(test.fail\) failed on attempt 2 of 2: .*; "
        r"dead-lettered \(attempts exhausted\)",
        log,
    ), log
    assert re.search(
        rf"WARNING .*job {doomed} \(test.fail_permanent\) failed on attempt 1 of 2: "
        r"Fail: cannot ever work; dead-lettered \(permanent failure\)",
        log,
    ), log
    assert "payload-must-not-be-logged" not in log
    assert "stopped: 3 claimed: 1 retried, 2 dead-lettered" in log, log
    assert "WorkerStats(" not in log


def test_the_claim_batch_bound_is_the_databases(sql, queue, worker_dsn: str) -> None:
    registry = Registry()

    @registry.handler("test.never")
    async def never(job: JobContext) -> None:
        raise AssertionError("nothing is claimed")

    config = WorkerConfig(queues=(queue,), concurrency=1001, batch=1001)  # batch ≤ free slots
    worker = Worker(registry, worker_dsn, config)
    with pytest.raises(InvalidInput, match="batch is 1001; it must be from 1 to 1000"):
        asyncio.run(worker.run())
