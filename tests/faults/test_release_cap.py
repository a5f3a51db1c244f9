"""A job whose worker is drained on every run ends in the dead letter queue once it passes
queue.retry.max_releases, and the worker counts that give-back as dead-lettered, not released."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor.handlers import JobContext, Registry
from conveyor.worker import Worker, WorkerConfig, WorkerStats
from helpers import scalar, set_flag, wait_until


def test_a_job_drained_on_every_run_is_dead_lettered_past_max_releases(
    sql: psycopg.Connection[Any], queue: str, fault_dsn: str
) -> None:
    registry = Registry()
    started = threading.Event()

    @registry.handler("fault.long")
    async def long(job: JobContext) -> None:
        started.set()
        await asyncio.sleep(600)  # outlasts the grace period: the drain releases it

    def run_until_drained() -> WorkerStats:
        started.clear()
        config = WorkerConfig(queues=(queue,), poll_interval=0.05, grace_period=0.1)
        worker = Worker(registry, fault_dsn, config)
        thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
        thread.start()
        try:
            wait_until(started.is_set, timeout=60)
        finally:
            worker.stop()
            thread.join(timeout=60)
        assert not thread.is_alive()
        return worker.stats

    set_flag(sql, "queue.retry.max_releases", 2)
    try:
        answer = scalar(
            sql,
            "SELECT fn_job_enqueue(kind => 'fault.long', payload => %s, queue => %s)",
            (Jsonb({}), queue),
        )
        job_id = int(answer["job_id"])
        runs = [run_until_drained() for _ in range(3)]
    finally:
        set_flag(sql, "queue.retry.max_releases", 100)

    reason = scalar(sql, "SELECT reason FROM job_dead_letter WHERE job_id = %s", (job_id,))
    assert reason == "max_releases_exceeded"
    assert [(s.released, s.dead_lettered) for s in runs] == [(1, 0), (1, 0), (0, 1)]
