"""Server-wide faults: a crash restart of PostgreSQL with jobs in flight, and the database
turned read-only for a while. Workers and the orchestrator ride through both on their own."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from faults.support import (
    Connect,
    Server,
    Start,
    assert_each_effect_exactly_once,
    assert_nothing_half_transitioned,
    enqueue_effects,
    statuses,
)
from helpers import scalar, wait_until, worker_log


def _connectable(admin: Connect) -> psycopg.Connection[Any] | None:
    try:
        return admin()
    except psycopg.OperationalError:
        return None


@pytest.mark.slow
def test_a_crash_restart_with_1000_jobs_in_flight_loses_and_doubles_nothing(
    sql: psycopg.Connection[Any],
    admin: Connect,
    server: Server,
    queue: str,
    start_worker: Start,
    start_orchestrator: Start,
) -> None:
    total = 1000
    sql.execute("DELETE FROM orchestrator_leader")
    enqueue_effects(sql, queue, total, sleep=0.02)
    orchestrator = start_orchestrator("--interval", "0.5", "--lease-seconds", "3")
    workers = [
        start_worker("--queue", queue, "--concurrency", "8", "--lease-seconds", "4")
        for _ in range(2)
    ]
    wait_until(lambda: statuses(sql, queue).get("succeeded", 0) >= 100, timeout=60)
    assert statuses(sql, queue).get("in_progress", 0) > 0

    server.restart("immediate")

    conn = wait_until(lambda: _connectable(admin), timeout=60, interval=0.2)
    with conn:
        wait_until(lambda: statuses(conn, queue) == {"succeeded": total}, timeout=90, interval=0.3)
        assert_each_effect_exactly_once(conn, queue, total)
    for process in (*workers, orchestrator):
        assert process.poll() is None, worker_log(process)
    for worker in workers:
        # the other worker may have finished the rest while this one's backoff ran: its
        # reconnect comes within that backoff (capped), not necessarily before the last job
        def reconnected(process: Any = worker) -> bool:
            return "reconnected" in worker_log(process)

        try:
            wait_until(reconnected, timeout=30)
        except AssertionError:
            raise AssertionError(worker_log(worker)) from None
        text = worker_log(worker)
        # capped exponential backoff: a handful of failed claims per outage, never a hot loop
        assert len(re.findall(r"claim failed", text)) <= 10, text
    text = worker_log(orchestrator)
    assert "database unavailable" in text or "tick step" in text, text


def test_a_read_only_database_pauses_claims_with_a_classified_error_then_resumes(
    sql: psycopg.Connection[Any], queue: str, start_worker: Start, start_orchestrator: Start
) -> None:
    total = 200
    name = f"ro-{queue}"
    database = scalar(sql, "SELECT current_database()")
    sql.execute("DELETE FROM orchestrator_leader")
    enqueue_effects(sql, queue, total, sleep=0.02)
    orchestrator = start_orchestrator("--interval", "0.5", "--lease-seconds", "3")
    worker = start_worker("--queue", queue, "--name", name, "--lease-seconds", "4")
    wait_until(lambda: statuses(sql, queue).get("succeeded", 0) >= 20, timeout=30)

    def cut_off_conveyor() -> None:
        sql.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'conveyor-%'"
        )

    sql.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    try:
        cut_off_conveyor()
        wait_until(
            lambda: (
                len(re.findall(r"claim failed \(ReadOnlySqlTransaction\)", worker_log(worker))) >= 2
            ),
            timeout=20,
        )
        wait_until(
            lambda: "database unavailable (ReadOnlySqlTransaction" in worker_log(orchestrator),
            timeout=20,
        )
        assert statuses(sql, queue).get("succeeded", 0) < total
        assert_nothing_half_transitioned(sql, queue)
    finally:
        sql.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    cut_off_conveyor()

    wait_until(lambda: statuses(sql, queue) == {"succeeded": total}, timeout=60, interval=0.3)
    assert_each_effect_exactly_once(sql, queue, total)
    assert worker.poll() is None, worker_log(worker)
    assert orchestrator.poll() is None, worker_log(orchestrator)
    text = worker_log(worker)
    assert re.search(r"retrying in (2|4|8)\.0 s", text), text
    # one new claim connection per cut-off, however many jobs noticed the broken one at once
    assert text.count(f"worker {name} reconnected") == 2, text
