"""Contention faults: an ACCESS EXCLUSIVE lock on job_queue, a long transaction pinning the xmin
horizon, and a connection limit smaller than the worker's concurrency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from faults.support import (
    Connect,
    Start,
    assert_each_effect_exactly_once,
    assert_nothing_half_transitioned,
    enqueue_effects,
    statuses,
)
from helpers import scalar, wait_until, worker_log


def last_beat(sql: psycopg.Connection[Any], component: str) -> Any:
    row = sql.execute(
        "SELECT last_beat_at FROM queue_heartbeat WHERE component = %s", (component,)
    ).fetchone()
    return row[0] if row else None


@pytest.mark.slow
def test_an_exclusive_lock_on_job_queue_stalls_claims_but_heartbeats_keep_landing(
    sql: psycopg.Connection[Any], admin: Connect, queue: str, start_worker: Start
) -> None:
    total = 300
    name = f"lk-{queue}"
    enqueue_effects(sql, queue, total, sleep=0.01)
    worker = start_worker("--queue", queue, "--name", name, "--concurrency", "4")
    wait_until(lambda: statuses(sql, queue).get("succeeded", 0) >= 20, timeout=30)
    wait_until(lambda: last_beat(sql, name), timeout=20)

    with admin() as locker, locker.transaction():
        locker.execute("LOCK TABLE conveyor.job_queue IN ACCESS EXCLUSIVE MODE")
        during = last_beat(sql, name)
        # the worker's claims and completions queue behind the lock…
        wait_until(
            lambda: scalar(
                sql,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name IN (%s, %s)",
                (f"conveyor-worker:{name}", f"conveyor-worker-tx:{name}"),
            ),
            timeout=10,
        )
        # …while the heartbeat, on its own connection and table, still lands
        wait_until(lambda: last_beat(sql, name) > during, timeout=15, interval=0.2)
        assert worker.poll() is None

    wait_until(lambda: statuses(sql, queue) == {"succeeded": total}, timeout=60, interval=0.2)
    assert_each_effect_exactly_once(sql, queue, total)
    assert worker.poll() is None, worker_log(worker)
    assert "lease lost" not in worker_log(worker)


def oldest_xmin_age(sql: psycopg.Connection[Any]) -> float | None:
    value = scalar(sql, "SELECT max(oldest_xmin_age_seconds) FROM v_queue_health")
    return None if value is None else float(value)


@pytest.mark.slow
def test_a_transaction_pinning_the_xmin_horizon_shows_in_health_and_throughput_recovers(
    sql: psycopg.Connection[Any], admin: Connect, queue: str, start_worker: Start
) -> None:
    name = f"xm-{queue}"
    start_worker("--queue", queue, "--name", name, "--concurrency", "8")
    wait_until(lambda: last_beat(sql, name), timeout=20)  # v_queue_health has a row
    pin = admin()
    pin.autocommit = False
    pin.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        pin.execute("SELECT count(*) FROM conveyor.job_queue")  # takes the snapshot
        enqueue_effects(sql, queue, 500)
        wait_until(lambda: statuses(sql, queue) == {"succeeded": 500}, timeout=60)
        age = wait_until(lambda: (oldest_xmin_age(sql) or 0) >= 1.0 and oldest_xmin_age(sql))
        assert age >= 1.0
        dead = scalar(
            sql,
            "SELECT n_dead_tup FROM pg_stat_user_tables"
            " WHERE schemaname = 'conveyor' AND relname = 'job_queue'",
        )
        assert dead is not None
    finally:
        pin.rollback()
        pin.close()

    wait_until(lambda: (oldest_xmin_age(sql) or 0.0) < 1.0, timeout=20)
    enqueue_effects(sql, queue, 500)  # seq values repeat: count them per batch below
    wait_until(lambda: statuses(sql, queue) == {"succeeded": 1000}, timeout=60)
    doubled = sql.execute(
        "SELECT e.job_id FROM public.fault_effect AS e JOIN job_queue AS j ON j.id = e.job_id"
        " WHERE j.queue = %s GROUP BY e.job_id HAVING count(*) <> 1",
        (queue,),
    ).fetchall()
    assert doubled == []
    assert_nothing_half_transitioned(sql, queue)


@pytest.fixture
def limited_dsn(sql: psycopg.Connection[Any], fault_dsn: str) -> Iterator[str]:
    """A URL for a worker role allowed only 5 connections (superusers ignore the limit)."""
    role = f"conveyor_fault_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    sql.execute(
        f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 5 PASSWORD '{password}' IN ROLE conveyor_worker"
    )
    sql.execute(f"GRANT USAGE ON SCHEMA conveyor_meta TO {role}")
    sql.execute(f"GRANT SELECT ON conveyor_meta.phase_state TO {role}")
    sql.execute(f"GRANT SELECT, INSERT ON public.fault_effect TO {role}")
    sql.execute(f"GRANT USAGE ON SEQUENCE public.fault_effect_id_seq TO {role}")
    params = conninfo_to_dict(fault_dsn)
    params.update(user=role, password=password)
    try:
        yield make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})
    finally:
        sql.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        wait_until(
            lambda: (
                not scalar(sql, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,))
            )
        )
        sql.execute(f"DROP OWNED BY {role}")
        sql.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_concurrency_above_the_connection_limit_never_starves_lease_renewal(
    sql: psycopg.Connection[Any], queue: str, start_worker: Start, limited_dsn: str
) -> None:
    total = 30
    name = f"pl-{queue}"
    enqueue_effects(sql, queue, total, sleep=0.6)
    worker = start_worker(
        "--queue",
        queue,
        "--name",
        name,
        "--concurrency",
        "8",
        "--lease-seconds",
        "3",
        url=limited_dsn,
    )
    rescued = 0

    def drained() -> bool:
        nonlocal rescued  # a reaper keeps running meanwhile: an expired lease would be taken
        rescued += int(scalar(sql, "SELECT fn_job_lease_reaper()")["rescued"])
        return statuses(sql, queue) == {"succeeded": total}

    wait_until(drained, timeout=90, interval=0.1)

    assert rescued == 0
    assert scalar(sql, "SELECT max(attempts) FROM job_queue WHERE queue = %s", (queue,)) == 1
    assert_each_effect_exactly_once(sql, queue, total)
    text = worker_log(worker)
    assert "too many connections" in text, text  # the pool really was starved
    assert "lease lost" not in text and "could not be renewed" not in text, text
    assert worker.poll() is None, text
