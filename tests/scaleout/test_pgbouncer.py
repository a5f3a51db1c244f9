"""Everything a user runs, through a transaction-pooling PgBouncer: enqueue, the worker's hot path
(claim, complete, lease renewal), the orchestrator, dispatch, tick, health and the CLI."""

from __future__ import annotations

import signal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor import db
from conveyor.settings import Settings
from helpers import scalar, wait_until, worker_log

PREPARED_STATEMENT_TROUBLE = ("prepared statement", "bind message supplies")


def enqueue_effects(sql: psycopg.Connection[Any], queue: str, count: int) -> None:
    sql.execute(
        "SELECT fn_job_enqueue_many(jobs => %s)",
        (
            Jsonb(
                [
                    {"kind": "test.effect", "queue": queue, "payload": {"seq": seq}}
                    for seq in range(count)
                ]
            ),
        ),
    )


def succeeded(sql: psycopg.Connection[Any], queue: str) -> int:
    return int(
        scalar(
            sql,
            "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'",
            (queue,),
        )
    )


def test_a_worker_of_concurrency_20_runs_2000_jobs_through_pgbouncer_each_exactly_once(
    sql, queue, start_worker
) -> None:
    enqueue_effects(sql, queue, 2000)
    worker = start_worker("--queue", queue, "--concurrency", "20")

    wait_until(lambda: succeeded(sql, queue) == 2000 or worker.poll() is not None, timeout=180)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)

    assert succeeded(sql, queue) == 2000, worker_log(worker)[-3000:]
    effects = sql.execute(
        "SELECT count(*), count(DISTINCT e.seq) FROM public.test_effect AS e"
        " JOIN job_queue AS jq ON jq.id = e.job_id WHERE jq.queue = %s",
        (queue,),
    ).fetchone()
    assert effects == (2000, 2000)  # every job's effect once: none lost, none doubled
    log = worker_log(worker)
    assert not [word for word in PREPARED_STATEMENT_TROUBLE if word in log], log[-3000:]


def test_connections_through_pgbouncer_turn_prepared_statements_off_and_direct_ones_keep_them(
    direct_dsn, pooled_dsn
) -> None:
    with db.connect(pooled_dsn) as pooled, db.connect(direct_dsn) as direct:
        assert pooled.prepare_threshold is None
        assert direct.prepare_threshold == 5  # psycopg's default


def test_conveyor_pgbouncer_says_so_without_asking_the_server(direct_dsn) -> None:
    forced = Settings(database_url=direct_dsn, pgbouncer=True)
    with db.connect(direct_dsn, settings=forced) as conn:
        assert conn.prepare_threshold is None
