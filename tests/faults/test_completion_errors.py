"""The completion flusher survives an unexpected database error: a batch the database rejects (a
real constraint error raised by a trigger on one job's completion) is logged, counted and
completed job by job, the bad job is left to its lease, and later completions still land."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.handlers import JobContext, Registry
from conveyor.worker import Worker, WorkerConfig
from helpers import scalar, wait_until

_POISON = """
CREATE FUNCTION public.fault_reject_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'injected: job % may not succeed', NEW.id USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER fault_reject_completion BEFORE UPDATE ON conveyor.job_queue FOR EACH ROW
    WHEN (NEW.status = 'succeeded' AND NEW.kind = 'fault.poison')
    EXECUTE FUNCTION public.fault_reject_completion();
"""


@pytest.fixture
def poisoned(sql: psycopg.Connection[Any]) -> Iterator[None]:
    sql.execute(_POISON)
    try:
        yield
    finally:
        sql.execute("DROP TRIGGER fault_reject_completion ON conveyor.job_queue")
        sql.execute("DROP FUNCTION public.fault_reject_completion()")


def enqueue(sql: psycopg.Connection[Any], kind: str, queue: str) -> int:
    answer = scalar(
        sql,
        "SELECT fn_job_enqueue(kind => %s, payload => %s, queue => %s)",
        (kind, Jsonb({}), queue),
    )
    return int(answer["job_id"])


def succeeded(sql: psycopg.Connection[Any], ids: list[int]) -> int:
    return int(
        scalar(
            sql,
            "SELECT count(*) FROM job_queue WHERE id = ANY(%s) AND status = 'succeeded'",
            (ids,),
        )
    )


def test_a_completion_batch_rejected_by_the_database_is_logged_counted_and_does_not_stall(
    sql: psycopg.Connection[Any],
    queue: str,
    fault_dsn: str,
    poisoned: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry()
    ran = threading.Event()

    @registry.handler("fault.ok")
    async def ok(job: JobContext) -> None:
        return None

    @registry.handler("fault.poison")
    async def poison(job: JobContext) -> None:
        ran.set()

    ids = [enqueue(sql, "fault.ok", queue) for _ in range(20)]
    bad = enqueue(sql, "fault.poison", queue)
    ids += [enqueue(sql, "fault.ok", queue) for _ in range(20)]
    worker = Worker(registry, fault_dsn, WorkerConfig(queues=(queue,), poll_interval=0.05))
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
    caplog.set_level(logging.ERROR, logger="conveyor")
    thread.start()
    try:
        wait_until(lambda: succeeded(sql, ids) == len(ids), timeout=60)
        wait_until(lambda: worker.stats.completion_errors >= 1, timeout=60)
        # The flusher is still alive: a job enqueued after the failure completes too.
        later = enqueue(sql, "fault.ok", queue)
        wait_until(lambda: succeeded(sql, [later]) == 1, timeout=60)
    finally:
        worker.stop()
        thread.join(timeout=120)
    assert not thread.is_alive(), "the worker did not stop"
    assert ran.is_set()
    assert scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (bad,)) == "in_progress"
    assert "completion errors" in str(worker.stats)
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)
    assert any("injected: job" in r.getMessage() for r in caplog.records)
