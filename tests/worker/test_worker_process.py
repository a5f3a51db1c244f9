"""Real worker processes: drain on SIGTERM, SIGKILL recovery, zombies fenced, poison jobs,
lease renewal under a blocked event loop, transactional completion exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from helpers import scalar, wait_until, worker_log


def enqueue(
    sql: psycopg.Connection[Any],
    kind: str,
    queue: str,
    payload: dict[str, Any] | None = None,
    **options: Any,
) -> int:
    answer = scalar(
        sql,
        "SELECT fn_job_enqueue(kind => %s, payload => %s, queue => %s, max_attempts => %s)",
        (kind, Jsonb(payload or {}), queue, options.get("max_attempts")),
    )
    assert answer.get("ok"), answer
    return int(answer["job_id"])


def statuses(sql: psycopg.Connection[Any], queue: str) -> dict[str, int]:
    rows = sql.execute(
        "SELECT status, count(*) FROM job_queue WHERE queue = %s GROUP BY status", (queue,)
    ).fetchall()
    return {str(s): int(n) for s, n in rows}


def reap_expired(sql: psycopg.Connection[Any], queue: str) -> None:
    """Move this queue's leases into the past and run the reaper (DB clock, no sleeping)."""
    sql.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second'"
        " WHERE queue = %s AND status = 'in_progress'",
        (queue,),
    )
    sql.execute("SELECT fn_job_lease_reaper()")


def test_a_worker_runs_queued_jobs_and_drains_on_sigterm(sql, queue, start_worker) -> None:
    ids = [enqueue(sql, "test.sleep", queue, {"seconds": 1}) for _ in range(3)]
    worker = start_worker("--queue", queue, "--concurrency", "3")
    wait_until(lambda: statuses(sql, queue).get("in_progress") == 3, timeout=20)
    late = enqueue(sql, "test.noop", queue)

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker_log(worker)
    rows = dict(
        sql.execute("SELECT id, status FROM job_queue WHERE id = ANY(%s)", (ids,)).fetchall()
    )
    assert set(rows.values()) == {"succeeded"}
    assert scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (late,)) == "queued"


def test_sigterm_past_the_grace_period_releases_leases_without_spending_attempts(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.cooperative", queue)
    worker = start_worker("--queue", queue, "--grace-period", "0.5")
    wait_until(lambda: statuses(sql, queue).get("in_progress") == 1, timeout=20)

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker_log(worker)
    row = sql.execute(
        "SELECT status, attempts, lease_token FROM job_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("queued", 0, None)


def test_a_sigkilled_worker_loses_nothing_the_reaper_hands_its_job_out_again(
    sql, queue, start_worker, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job_id = enqueue(sql, "test.marker", queue, {"marker": str(marker), "seconds": 60})
    first = start_worker("--queue", queue)
    wait_until(marker.exists, timeout=20)

    first.kill()
    first.wait(timeout=10)
    assert statuses(sql, queue) == {"in_progress": 1}
    reap_expired(sql, queue)

    assert sql.execute(
        "SELECT status, attempts FROM job_queue WHERE id = %s", (job_id,)
    ).fetchone() == ("queued", 1)
    sql.execute(
        "UPDATE job_queue SET payload = jsonb_set(payload, '{seconds}', '0') WHERE id = %s",
        (job_id,),
    )
    start_worker("--queue", queue)
    wait_until(lambda: statuses(sql, queue) == {"succeeded": 1}, timeout=20)
    assert len(marker.read_text().splitlines()) == 2


def test_a_handler_that_always_raises_is_dead_lettered_after_exactly_max_attempts(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.fail", queue, max_attempts=3)
    start_worker("--queue", queue)

    wait_until(
        lambda: scalar(sql, "SELECT count(*) FROM job_dead_letter WHERE job_id = %s", (job_id,)),
        timeout=30,
    )

    row = sql.execute(
        "SELECT reason, attempts, error FROM job_dead_letter WHERE job_id = %s", (job_id,)
    ).fetchone()
    assert row[0] == "max_attempts_exhausted"
    assert row[1] == 3
    assert "RuntimeError: this handler always fails" in row[2]
    assert statuses(sql, queue) == {}


def test_a_handler_failing_permanently_goes_straight_to_the_dead_letter(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.fail_permanent", queue, max_attempts=5)
    start_worker("--queue", queue)
    wait_until(
        lambda: scalar(sql, "SELECT count(*) FROM job_dead_letter WHERE job_id = %s", (job_id,)),
        timeout=30,
    )
    assert (
        scalar(sql, "SELECT reason FROM job_dead_letter WHERE job_id = %s", (job_id,))
        == "permanent_failure"
    )


def test_a_job_that_kills_its_worker_every_time_ends_in_the_dead_letter(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.suicide", queue, max_attempts=2)
    for _ in range(2):
        worker = start_worker("--queue", queue)
        assert worker.wait(timeout=30) == -signal.SIGKILL
        reap_expired(sql, queue)
    assert (
        scalar(sql, "SELECT reason FROM job_dead_letter WHERE job_id = %s", (job_id,))
        == "lease_expired"
    )
    assert scalar(sql, "SELECT attempts FROM job_dead_letter WHERE job_id = %s", (job_id,)) == 2


def test_a_snoozed_job_runs_again_without_spending_an_attempt(
    sql, queue, start_worker, tmp_path: Path
) -> None:
    marker = tmp_path / "snoozed"
    job_id = enqueue(sql, "test.snooze_once", queue, {"marker": str(marker)})
    start_worker("--queue", queue)
    wait_until(lambda: statuses(sql, queue) == {"succeeded": 1}, timeout=20)
    assert marker.read_text() == "1"
    assert scalar(sql, "SELECT attempts FROM job_queue WHERE id = %s", (job_id,)) == 1


def test_cancelling_a_running_job_stops_its_handler_and_ends_it_cancelled(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.cooperative", queue)
    start_worker("--queue", queue, "--lease-seconds", "3")
    wait_until(lambda: statuses(sql, queue).get("in_progress") == 1, timeout=20)

    answer = scalar(sql, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    assert answer["status"] == "cancel_requested"
    wait_until(lambda: statuses(sql, queue) == {"cancelled": 1}, timeout=20)


def test_lease_renewal_survives_a_handler_that_blocks_the_event_loop(
    sql, queue, start_worker
) -> None:
    job_id = enqueue(sql, "test.block_loop", queue, {"seconds": 8})
    start_worker("--queue", queue, "--lease-seconds", "3")
    wait_until(lambda: statuses(sql, queue).get("in_progress") == 1, timeout=20)
    rescued = 0
    while statuses(sql, queue).get("in_progress"):  # a reaper keeps running meanwhile
        rescued += int(scalar(sql, "SELECT fn_job_lease_reaper()")["rescued"])
        time.sleep(0.1)
    wait_until(lambda: statuses(sql, queue) == {"succeeded": 1}, timeout=30)
    assert rescued == 0
    assert scalar(sql, "SELECT attempts FROM job_queue WHERE id = %s", (job_id,)) == 1


def test_a_paused_zombie_worker_is_fenced_when_it_resumes(
    sql, queue, start_worker, tmp_path: Path
) -> None:
    marker, release = tmp_path / "marker", tmp_path / "release"
    payload = {"marker": str(marker), "release": str(release)}
    job_id = enqueue(sql, "test.wait_release", queue, payload)
    zombie = start_worker("--queue", queue, "--lease-seconds", "3")
    wait_until(marker.exists, timeout=20)  # the zombie's attempt runs until `release` exists
    zombie.send_signal(signal.SIGSTOP)
    try:
        reap_expired(sql, queue)
        release.touch()  # the paused zombie cannot see it; the rescuer's attempt ends at once
        rescuer = start_worker("--queue", queue, "--name", "rescuer")
        wait_until(lambda: statuses(sql, queue) == {"succeeded": 1}, timeout=20)
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=20)
    finally:
        zombie.send_signal(signal.SIGCONT)
    try:
        wait_until(lambda: "lease lost" in worker_log(zombie), timeout=20)
    except AssertionError as error:
        raise AssertionError(f"{error}; the zombie's log:\n{worker_log(zombie)}") from None
    runs = [line.split() for line in marker.read_text().splitlines()]
    assert [(attempt, worker) for _, attempt, worker in runs][-1] == ("2", "rescuer")
    assert scalar(sql, "SELECT attempts FROM job_queue WHERE id = %s", (job_id,)) == 2


def test_a_worker_refuses_to_start_when_a_phase_it_needs_is_missing(empty_dsn: str) -> None:
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": empty_dsn,
        "PYTHONPATH": str(Path(__file__).parent.parent / "apps"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--app", "workerapp:registry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "found phases none, need [0, 1, 2]: run `conveyor phase apply 0`" in result.stderr


def test_transactional_completion_writes_each_effect_exactly_once_across_a_sigkill(
    sql, queue, start_worker
) -> None:
    total = 10_000
    sql.execute(
        "SELECT fn_job_enqueue_many(jobs => %s)",
        (
            Jsonb(
                [
                    {"kind": "test.effect", "queue": queue, "payload": {"seq": i}}
                    for i in range(total)
                ]
            ),
        ),
    )
    workers = [
        start_worker("--queue", queue, "--concurrency", "8", "--lease-seconds", "5")
        for _ in range(3)
    ]
    wait_until(lambda: statuses(sql, queue).get("succeeded", 0) >= total // 4, timeout=60)

    workers[0].kill()
    workers[0].wait(timeout=10)

    def all_done() -> bool:
        sql.execute("SELECT fn_job_lease_reaper()")
        return statuses(sql, queue) == {"succeeded": total}

    wait_until(all_done, timeout=120, interval=0.5)
    per_job = sql.execute(
        "SELECT count(*) AS n FROM public.test_effect AS e JOIN job_queue AS j ON j.id = e.job_id"
        " WHERE j.queue = %s GROUP BY e.job_id HAVING count(*) <> 1",
        (queue,),
    ).fetchall()
    assert per_job == []
    assert (
        scalar(
            sql,
            "SELECT count(DISTINCT e.seq) FROM public.test_effect AS e"
            " JOIN job_queue AS j ON j.id = e.job_id WHERE j.queue = %s",
            (queue,),
        )
        == total
    )


def test_a_worker_with_an_executor_claims_only_its_subscribed_kinds(
    sql, queue, start_worker
) -> None:
    sql.execute("SELECT fn_job_subscribe(executor => 'agent', kind_pattern => 'test.noop')")
    wanted = enqueue(sql, "test.noop", queue)
    other = enqueue(sql, "test.sleep", queue, {"seconds": 0})
    start_worker("--queue", queue, "--executor", "agent")

    wait_until(
        lambda: scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (wanted,)) == "succeeded",
        timeout=20,
    )
    assert scalar(sql, "SELECT status FROM job_queue WHERE id = %s", (other,)) == "queued"
