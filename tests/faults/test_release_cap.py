"""A job its handler gives back on every run ends in the dead letter queue once it passes
queue.retry.max_releases, and the worker counts it as dead-lettered, not as snoozed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor.handlers import JobContext, Registry, Snooze
from conveyor.worker import Worker, WorkerConfig
from helpers import scalar, set_flag, wait_until


def test_a_job_snoozed_on_every_run_is_dead_lettered_past_max_releases(
    sql: psycopg.Connection[Any], queue: str, fault_dsn: str
) -> None:
    registry = Registry()
    runs: list[int] = []

    @registry.handler("fault.forever")
    async def forever(job: JobContext) -> None:
        runs.append(job.job.job_id)
        raise Snooze(0)

    set_flag(sql, "queue.retry.max_releases", 2)
    try:
        answer = scalar(
            sql,
            "SELECT fn_job_enqueue(kind => 'fault.forever', payload => %s, queue => %s)",
            (Jsonb({}), queue),
        )
        job_id = int(answer["job_id"])
        worker = Worker(registry, fault_dsn, WorkerConfig(queues=(queue,), poll_interval=0.05))
        thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
        thread.start()
        try:
            wait_until(
                lambda: scalar(
                    sql, "SELECT count(*) FROM job_dead_letter WHERE job_id = %s", (job_id,)
                ),
                timeout=60,
            )
        finally:
            worker.stop()
            thread.join(timeout=60)
    finally:
        set_flag(sql, "queue.retry.max_releases", 100)
    reason = scalar(sql, "SELECT reason FROM job_dead_letter WHERE job_id = %s", (job_id,))
    assert reason == "max_releases_exceeded"
    assert len(runs) == 3
    assert (worker.stats.snoozed, worker.stats.dead_lettered) == (2, 1)
