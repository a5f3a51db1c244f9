"""Phase 3 processes: leadership hand-over, deposed leaders, idempotent ticks, the silent-worker
alarm end to end, `conveyor health`, and the NOTIFY listener surviving a killed connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import psycopg

from helpers import scalar, wait_until, worker_log


def holder(sql: psycopg.Connection[Any]) -> tuple[str | None, int | None]:
    row = sql.execute(
        "SELECT holder, term FROM orchestrator_leader WHERE name = 'default'"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def conveyor(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": dsn, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_leadership_moves_within_seconds_when_the_leader_is_killed(sql, start_orchestrator) -> None:
    first = start_orchestrator("--name", "orch-a", "--interval", "0.3", "--lease-seconds", "2")
    wait_until(lambda: holder(sql)[0] == "orch-a", timeout=20)
    term = holder(sql)[1]
    start_orchestrator("--name", "orch-b", "--interval", "0.3", "--lease-seconds", "2")
    wait_until(
        lambda: (
            "orchestrator:orch-b"
            in str(sql.execute("SELECT array_agg(component) FROM queue_heartbeat").fetchone())
        ),
        timeout=20,
    )
    assert holder(sql)[0] == "orch-a"

    first.kill()

    wait_until(lambda: holder(sql)[0] == "orch-b", timeout=15)
    assert term is not None
    assert holder(sql)[1] == term + 1


def test_a_paused_leader_whose_connection_was_killed_is_deposed_and_stops_acting(
    sql, start_orchestrator
) -> None:
    sql.execute("DELETE FROM orchestrator_leader")
    leader = start_orchestrator("--name", "orch-x", "--interval", "0.3", "--lease-seconds", "2")
    wait_until(lambda: holder(sql)[0] == "orch-x", timeout=20)
    leader.send_signal(signal.SIGSTOP)
    try:
        sql.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'conveyor-orchestrator:orch-x'"
        )
        start_orchestrator("--name", "orch-y", "--interval", "0.3", "--lease-seconds", "2")
        wait_until(lambda: holder(sql)[0] == "orch-y", timeout=20)
    finally:
        leader.send_signal(signal.SIGCONT)
    wait_until(lambda: "lost leadership to orch-y" in worker_log(leader), timeout=20)
    after = worker_log(leader).split("lost leadership to orch-y")[-1]
    assert "leads (term" not in after
    assert holder(sql)[0] == "orch-y"


def test_two_ticks_at_once_end_in_the_same_state_as_one(sql, worker_dsn, queue) -> None:
    sql.execute("DELETE FROM orchestrator_leader")
    ids = [
        int(
            scalar(
                sql,
                "SELECT (fn_job_enqueue(kind => 'test.noop', queue => %s))->>'job_id'",
                (queue,),
            )
        )
        for _ in range(200)
    ]
    sql.execute(
        "SELECT fn_job_claim(worker => 'gone', queues => ARRAY[%s], batch => 200)", (queue,)
    )
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 s' WHERE queue = %s", (queue,)
    )
    component = f"silent-{queue}"
    sql.execute(
        "SELECT fn_heartbeat_register(component => %s, component_kind => 'worker',"
        " cadence_seconds => 5)",
        (component,),
    )
    sql.execute("SELECT fn_heartbeat_beat(component => %s)", (component,))
    sql.execute(
        "UPDATE queue_heartbeat SET last_beat_at = now() - interval '1 hour' WHERE component = %s",
        (component,),
    )

    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(conveyor(worker_dsn, "tick")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    rows = sql.execute(
        "SELECT status, attempts, count(*) FROM job_queue WHERE id = ANY(%s) GROUP BY 1, 2", (ids,)
    ).fetchall()
    assert rows == [("queued", 1, 200)]
    assert (
        scalar(
            sql,
            "SELECT count(*) FROM event_outbox WHERE event_type ="
            " 'system/queue_worker_silent' AND payload->>'component' = %s",
            (component,),
        )
        == 1
    )
    conveyor(worker_dsn, "tick")  # the events of the ticks above are readable now
    assert (
        scalar(sql, "SELECT count(*) FROM queue_watchdog_alert WHERE component = %s", (component,))
        == 1
    )
    assert scalar(sql, "SELECT count(*) FROM v_red_zones WHERE component = %s", (component,)) == 1
    sql.execute("SELECT fn_heartbeat_deregister(component => %s)", (component,))


def test_a_stopped_worker_raises_the_alarm_and_recovers_when_it_resumes(
    sql, worker_dsn, queue, start_worker
) -> None:
    name = f"w-{queue}"
    worker = start_worker("--queue", queue, "--name", name)
    wait_until(
        lambda: scalar(
            sql,
            "SELECT count(*) FROM queue_heartbeat WHERE component = %s"
            " AND last_beat_at IS NOT NULL",
            (name,),
        ),
        timeout=20,
    )
    worker.send_signal(signal.SIGSTOP)
    try:
        sql.execute(
            "UPDATE queue_heartbeat SET last_beat_at = now() - interval '1 hour'"
            " WHERE component = %s",
            (name,),
        )
        assert conveyor(worker_dsn, "tick").returncode == 0
        assert conveyor(worker_dsn, "tick").returncode == 0
        assert (
            scalar(sql, "SELECT status_hint FROM v_queue_health WHERE component = %s", (name,))
            == "stale"
        )
        assert conveyor(worker_dsn, "health").returncode == 1
        assert (
            scalar(sql, "SELECT alert FROM queue_watchdog_alert WHERE component = %s", (name,))
            == "silent"
        )
    finally:
        worker.send_signal(signal.SIGCONT)
    wait_until(
        lambda: (
            scalar(sql, "SELECT status_hint FROM v_queue_health WHERE component = %s", (name,))
            == "fresh"
        ),
        timeout=30,
    )
    conveyor(worker_dsn, "tick")
    conveyor(worker_dsn, "tick")
    alerts = sql.execute(
        "SELECT alert FROM queue_watchdog_alert WHERE component = %s ORDER BY id", (name,)
    ).fetchall()
    assert alerts == [("silent",), ("recovered",)]
    assert scalar(sql, "SELECT count(*) FROM v_red_zones WHERE component = %s", (name,)) == 0


def test_a_gracefully_stopped_worker_never_goes_silent(
    sql, worker_dsn, queue, start_worker
) -> None:
    name = f"g-{queue}"
    worker = start_worker("--queue", queue, "--name", name)
    wait_until(
        lambda: scalar(
            sql,
            "SELECT count(*) FROM queue_heartbeat WHERE component = %s"
            " AND last_beat_at IS NOT NULL",
            (name,),
        ),
        timeout=20,
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    sql.execute(
        "UPDATE queue_heartbeat SET last_beat_at = now() - interval '1 hour' WHERE component = %s",
        (name,),
    )
    conveyor(worker_dsn, "tick")
    assert (
        scalar(sql, "SELECT count(*) FROM event_outbox WHERE payload->>'component' = %s", (name,))
        == 0
    )
    assert scalar(sql, "SELECT count(*) FROM v_queue_health WHERE component = %s", (name,)) == 0


def test_health_exits_0_when_everything_is_fresh_and_1_otherwise(sql, worker_dsn) -> None:
    def fresh_after_forgetting_the_rest() -> bool:
        # Components other tests left behind may turn late at any moment on a loaded machine:
        # forget whatever is not fresh and ask again until health sees only fresh ones.
        stale = sql.execute(
            "SELECT component FROM v_queue_health WHERE status_hint <> 'fresh'"
        ).fetchall()
        for (component,) in stale:
            sql.execute("SELECT fn_heartbeat_deregister(component => %s)", (component,))
        sql.execute("SELECT fn_iu_outbound_tick()")
        return conveyor(worker_dsn, "health").returncode == 0

    wait_until(fresh_after_forgetting_the_rest, timeout=60, interval=0.5)
    sql.execute(
        "SELECT fn_heartbeat_register(component => 'probe-never', component_kind => 'other',"
        " cadence_seconds => 5)"
    )
    result = conveyor(worker_dsn, "health")
    assert result.returncode == 1
    assert "not fresh: probe-never" in result.stderr
    assert conveyor(worker_dsn, "health", "--forget", "probe-never").returncode == 0


def test_the_listener_reconnects_after_its_connection_is_terminated(
    sql, worker_dsn, queue, start_worker
) -> None:
    sql.execute("UPDATE dot_config SET value = 'true' WHERE key = 'queue.notify.bridge_enabled'")
    try:
        name = f"l-{queue}"
        start_worker("--queue", queue, "--name", name, "--poll-interval", "30")
        app = f"conveyor-listener:{name}"

        def listener_pid() -> int | None:
            row = sql.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchone()
            return int(row[0]) if row else None

        first = wait_until(listener_pid, timeout=20)
        sql.execute("SELECT pg_terminate_backend(%s)", (first,))
        wait_until(lambda: (listener_pid() or first) != first, timeout=20)

        sql.execute("SELECT fn_job_enqueue(kind => 'test.noop', queue => %s)", (queue,))

        # the worker polls only every 30 s: picking the job up quickly needs the notification
        wait_until(
            lambda: scalar(
                sql,
                "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'",
                (queue,),
            ),
            timeout=10,
        )
    finally:
        sql.execute(
            "UPDATE dot_config SET value = 'false' WHERE key = 'queue.notify.bridge_enabled'"
        )


def test_up_runs_an_orchestrator_and_workers_and_stops_them_cleanly(sql, worker_dsn, queue) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": worker_dsn}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "up",
            "--app",
            "conveyor.demo_app:registry",
            "--workers",
            "2",
            "--queue",
            queue,
            "--interval",
            "0.5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sql.execute(
            "SELECT fn_job_enqueue_many(jobs => (SELECT jsonb_agg(jsonb_build_object("
            "'kind', 'demo.echo', 'queue', %s::text, 'payload', jsonb_build_object('n', g)))"
            " FROM generate_series(1, 50) AS g))",
            (queue,),
        )
        wait_until(
            lambda: (
                scalar(
                    sql,
                    "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'succeeded'",
                    (queue,),
                )
                == 50
            ),
            timeout=30,
        )
        wait_until(
            lambda: (
                scalar(
                    sql,
                    "SELECT count(*) FROM queue_heartbeat WHERE"
                    " metadata->'queues' ? %s AND deregistered_at IS NULL",
                    (queue,),
                )
                == 2
            ),
            timeout=30,
        )
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    assert (
        scalar(
            sql,
            "SELECT count(*) FROM queue_heartbeat WHERE metadata->'queues' ? %s"
            " AND deregistered_at IS NULL",
            (queue,),
        )
        == 0
    )


def test_an_outbox_emit_wakes_the_orchestrator_to_dispatch_at_once(
    sql, queue, start_orchestrator
) -> None:
    sql.execute("DELETE FROM orchestrator_leader")
    for key in ("queue.notify.bridge_enabled", "queue.dispatch.enabled"):
        sql.execute("UPDATE dot_config SET value = 'true' WHERE key = %s", (key,))
    try:
        sql.execute(
            "SELECT fn_consumer_register(consumer => %s, event_pattern => 'staging.record_marked',"
            " action => 'enqueue_job', job_kind => 'test.noop', job_queue => %s)",
            (f"wake-{queue}", queue),
        )
        start_orchestrator("--name", f"o-{queue}", "--interval", "60")
        wait_until(lambda: holder(sql)[0] == f"o-{queue}", timeout=20)
        listener = f"conveyor-listener:orchestrator:o-{queue}"
        wait_until(
            lambda: scalar(
                sql,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (listener,),
            ),
            timeout=20,
        )

        sql.execute("SELECT fn_outbox_emit('staging.record_marked', '{\"record_id\": 1}')")

        # the interval is 60 s: a job this soon means the notification woke the dispatch
        wait_until(
            lambda: scalar(sql, "SELECT count(*) FROM job_queue WHERE queue = %s", (queue,)) == 1,
            timeout=10,
        )
    finally:
        sql.execute("SELECT fn_consumer_disable(consumer => %s)", (f"wake-{queue}",))
        for key in ("queue.notify.bridge_enabled", "queue.dispatch.enabled"):
            sql.execute("UPDATE dot_config SET value = 'false' WHERE key = %s", (key,))
