"""pg_terminate_backend of each conveyor connection while jobs run: the claim and lease
connections of a worker and the orchestrator's; every job still succeeds exactly once and every
process reconnects on its own."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from faults.support import (
    Start,
    assert_each_effect_exactly_once,
    backend_pids,
    enqueue_effects,
    statuses,
    terminate,
)
from helpers import scalar, wait_until, worker_log

TOTAL = 300


@pytest.mark.parametrize("connection", ["worker", "lease"])
def test_a_worker_whose_connection_is_terminated_reconnects_and_loses_nothing(
    sql: psycopg.Connection[Any], queue: str, start_worker: Start, connection: str
) -> None:
    name = f"w-{queue}"
    enqueue_effects(sql, queue, TOTAL, sleep=0.02)
    worker = start_worker(
        "--queue", queue, "--name", name, "--concurrency", "4", "--lease-seconds", "6"
    )
    app = f"conveyor-{connection}:{name}"
    first = wait_until(lambda: backend_pids(sql, app), timeout=20)
    wait_until(lambda: statuses(sql, queue).get("succeeded", 0) >= 20, timeout=30)

    assert terminate(sql, app) == first

    wait_until(lambda: (backend_pids(sql, app) or first) != first, timeout=20)
    wait_until(lambda: statuses(sql, queue) == {"succeeded": TOTAL}, timeout=60, interval=0.2)
    assert worker.poll() is None, worker_log(worker)
    assert_each_effect_exactly_once(sql, queue, TOTAL)
    assert "lease lost" not in worker_log(worker)


def test_the_orchestrator_whose_connection_is_terminated_reconnects_and_keeps_reaping(
    sql: psycopg.Connection[Any], queue: str, start_orchestrator: Start
) -> None:
    sql.execute("DELETE FROM orchestrator_leader")
    name = f"o-{queue}"
    orchestrator = start_orchestrator("--name", name, "--interval", "0.3", "--lease-seconds", "3")
    app = f"conveyor-orchestrator:{name}"
    first = wait_until(lambda: backend_pids(sql, app), timeout=20)
    wait_until(
        lambda: (
            sql.execute("SELECT holder FROM orchestrator_leader WHERE name = 'default'").fetchone()
            == (name,)
        ),
        timeout=20,
    )

    assert terminate(sql, app) == first

    wait_until(lambda: (backend_pids(sql, app) or first) != first, timeout=20)
    # a lost lease is still rescued by the reconnected orchestrator's reaper
    job_id = scalar(
        sql,
        "SELECT (fn_job_enqueue(kind => 'fault.effect', queue => %s) ->> 'job_id')::bigint",
        (queue,),
    )
    claim = scalar(sql, "SELECT fn_job_claim(worker => 'gone', queues => ARRAY[%s])", (queue,))
    assert claim, claim
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )
    wait_until(lambda: statuses(sql, queue) == {"queued": 1}, timeout=20)
    assert orchestrator.poll() is None, worker_log(orchestrator)
