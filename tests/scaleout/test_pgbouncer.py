"""Everything a user runs, through a transaction-pooling PgBouncer: enqueue, the worker's hot path
(claim, complete, lease renewal), the orchestrator, dispatch, tick, health and the CLI."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cli.running import conveyor
from conveyor import db, notify
from conveyor.settings import Settings
from helpers import scalar, set_flag, unique, wait_until, worker_log

Conn = psycopg.Connection[Any]
Starter = Callable[..., subprocess.Popen[bytes]]
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
    sql: Conn, queue: str, start_worker: Starter
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
    assert log.count("LISTEN/NOTIFY cannot work through the pooler") == 1, log[-3000:]


def test_connections_through_pgbouncer_turn_prepared_statements_off_and_direct_ones_keep_them(
    direct_dsn: str, pooled_dsn: str
) -> None:
    with db.connect(pooled_dsn) as pooled, db.connect(direct_dsn) as direct:
        assert pooled.prepare_threshold is None
        assert direct.prepare_threshold == 5  # psycopg's default


def test_conveyor_pgbouncer_says_so_without_asking_the_server(direct_dsn: str) -> None:
    forced = Settings(database_url=direct_dsn, pgbouncer=True)
    with db.connect(direct_dsn, settings=forced) as conn:
        assert conn.prepare_threshold is None


def test_the_listen_probe_recognises_pgbouncer_and_passes_on_the_server_itself(
    direct_dsn: str, pooled_dsn: str
) -> None:
    through_pooler = asyncio.run(notify.probe(pooled_dsn))
    assert through_pooler is not None
    assert "pooler" in through_pooler
    assert asyncio.run(notify.probe(direct_dsn)) is None


def test_a_worker_with_a_direct_url_listens_there_and_is_woken_by_notify(
    sql: Conn, queue: str, direct_dsn: str, start_worker: Starter
) -> None:
    set_flag(sql, "queue.notify.bridge_enabled", True)
    name = unique("listening-")
    try:
        # it polls once a minute; each job below must run well before that: only a notification
        # (through the direct URL; the pooler cannot carry LISTEN) makes it claim that soon
        worker = start_worker(
            "--queue",
            queue,
            "--name",
            name,
            "--poll-interval",
            "60",
            extra_env={"CONVEYOR_DIRECT_DATABASE_URL": direct_dsn},
        )
        wait_until(
            lambda: f"{name} listens on conveyor_jobs" in worker_log(worker) or worker.poll(),
            timeout=60,
        )
        assert worker.poll() is None, worker_log(worker)
        for done in range(1, 4):
            enqueue_one(sql, queue)
            wait_until(lambda: succeeded(sql, queue) == done, timeout=30)  # noqa: B023
    finally:
        set_flag(sql, "queue.notify.bridge_enabled", False)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert "relying on polling" not in worker_log(worker)


def test_health_through_pgbouncer_says_workers_poll_and_with_a_direct_url_that_they_listen(
    pooled_dsn: str, direct_dsn: str
) -> None:
    pooled = conveyor("health", url=pooled_dsn)
    direct = conveyor(
        "health", url=pooled_dsn, extra_env={"CONVEYOR_DIRECT_DATABASE_URL": direct_dsn}
    )

    assert "listener: polling only: LISTEN/NOTIFY cannot work through the pooler" in (
        pooled.stdout
    ), pooled.stdout + pooled.stderr
    assert "listener: LISTEN/NOTIFY works" in direct.stdout, direct.stdout + direct.stderr
    assert "Traceback" not in pooled.stderr + direct.stderr


def test_enqueue_tick_dispatch_and_the_phase_commands_work_through_pgbouncer(
    sql: Conn, queue: str, pooled_dsn: str
) -> None:
    event_type, kind = unique("job.test_scaleout_"), unique("t.scaleout.")
    sql.execute("SELECT fn_event_type_register(%s)", (event_type,))
    sql.execute(
        "SELECT fn_consumer_register(consumer => %s, event_pattern => %s, action => 'enqueue_job',"
        " job_kind => %s, job_queue => %s)",
        (unique("c."), event_type, kind, queue),
    )
    set_flag(sql, "queue.dispatch.enabled", True)
    try:
        sql.execute("SELECT fn_outbox_emit(%s, %s, 'tests')", (event_type, Jsonb({"n": 1})))
        results = [
            conveyor("enqueue", "test.noop", "--queue", queue, url=pooled_dsn),
            conveyor("tick", url=pooled_dsn),
            conveyor("phase", "status", url=pooled_dsn),
            conveyor("dlq", "list", url=pooled_dsn),
        ]
    finally:
        set_flag(sql, "queue.dispatch.enabled", False)

    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    kinds = sql.execute(
        "SELECT kind, count(*) FROM job_queue WHERE queue = %s GROUP BY kind ORDER BY kind",
        (queue,),
    ).fetchall()
    assert sorted(kinds) == sorted([("test.noop", 1), (kind, 1)])  # enqueued, and dispatched


def test_an_orchestrator_through_pgbouncer_leads_and_reaps_an_expired_lease(
    sql: Conn, queue: str, start_orchestrator: Starter
) -> None:
    job_id = enqueue_one(sql, queue)
    sql.execute("SELECT fn_job_claim(worker => 'gone', queues => ARRAY[%s])", (queue,))
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 s' WHERE id = %s", (job_id,)
    )
    sql.execute("DELETE FROM orchestrator_leader")
    name = unique("orch-")
    orchestrator = start_orchestrator("--name", name, "--interval", "0.3")

    wait_until(lambda: leader(sql) == name, timeout=30)
    wait_until(lambda: job_status(sql, job_id) == "queued", timeout=30)
    orchestrator.send_signal(signal.SIGTERM)
    orchestrator.wait(timeout=30)
    log = worker_log(orchestrator)
    assert not [word for word in PREPARED_STATEMENT_TROUBLE if word in log], log[-3000:]
    assert log.count("LISTEN/NOTIFY cannot work through the pooler") == 1, log[-3000:]


def enqueue_one(sql: psycopg.Connection[Any], queue: str) -> int:
    answer = scalar(sql, "SELECT fn_job_enqueue(kind => 'test.noop', queue => %s)", (queue,))
    return int(answer["job_id"])


def job_status(sql: psycopg.Connection[Any], job_id: int) -> str:
    return str(scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (job_id,)))


def leader(sql: psycopg.Connection[Any]) -> str | None:
    row = sql.execute("SELECT holder FROM orchestrator_leader WHERE name = 'default'").fetchone()
    return str(row[0]) if row else None
