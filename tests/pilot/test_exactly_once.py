"""Exactly once per step with real processes: a worker SIGKILLed inside a cut (target written,
not committed) leaves no half cut and the retry cuts once; two workers and 1,000 records
approved at once give 1,000 of each step and no duplicate target rows; a cut in flight when the
pilot is switched off finishes, and the next step waits for the flag."""

from __future__ import annotations

from typing import Any

import psycopg

from helpers import scalar, set_flag, wait_until
from pilot.pilotapps import HOLD_KEY
from pilot.support import Sql, Starter, all_cleaned, events, stage, statuses, step_jobs

STEPS = ("staging.cut", "staging.verify_cut", "staging.cleanup")


def _blocked_backend(sql: Sql) -> Any:
    """pid of the session waiting for the test's advisory lock (the worker inside its cut)."""
    row = sql.execute(
        "SELECT l.pid FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.classid = 0"
        " AND l.objid = %s AND NOT l.granted",
        (HOLD_KEY,),
    ).fetchone()
    return None if row is None else row[0]


def test_a_worker_killed_inside_a_cut_leaves_no_half_cut_and_the_retry_cuts_once(
    pilot_dsn: str, sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    start_orchestrator()
    with psycopg.connect(pilot_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        victim = start_worker("--name", "victim", "--lease-seconds", "3", app="pilotapps:blocking")
        [record_id] = stage(sql, 1)

        backend = wait_until(lambda: _blocked_backend(sql), timeout=60)
        # inside the cut: it has inserted into the target (it holds the table's write lock)
        assert (
            scalar(
                sql,
                "SELECT count(*) FROM pg_locks AS l WHERE l.pid = %s AND l.granted"
                " AND l.relation = 'conveyor.pilot_cut_target'::regclass"
                " AND l.mode = 'RowExclusiveLock'",
                (backend,),
            )
            == 1
        )
        victim.kill()  # SIGKILL: no drain, no release, no rollback sent
        victim.wait(timeout=10)
        holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))

    # the orphaned session gets the lock, finds its client gone and rolls back
    wait_until(
        lambda: (
            scalar(sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,)) == 0
        ),
        timeout=60,
    )
    assert statuses(sql, [record_id]) == {"approved": 1}
    assert (
        scalar(
            sql, "SELECT count(*) FROM conveyor.pilot_cut_target WHERE record_id = %s", (record_id,)
        )
        == 0
    )
    assert events(sql, [record_id]).get("staging.record_consumed") is None

    start_worker("--name", "rescuer")
    wait_until(lambda: all_cleaned(sql, [record_id]), timeout=120)

    cut = sql.execute(
        "SELECT r.cut_by, t.cut_by, t.job_id, jq.attempts, jq.status"
        " FROM iu_core.iu_staging_record AS r"
        " JOIN conveyor.pilot_cut_target AS t ON t.record_id = r.id"
        " JOIN conveyor.job_queue AS jq ON jq.id = t.job_id WHERE r.id = %s",
        (record_id,),
    ).fetchall()
    assert len(cut) == 1
    assert cut[0][0] == cut[0][1] == "rescuer"
    assert cut[0][3:] == (2, "succeeded")  # attempt 1 died with the victim, attempt 2 cut
    assert events(sql, [record_id]) == {
        "staging.record_marked": 1,
        "staging.record_approved": 1,
        "staging.record_consumed": 1,
        "staging.record_verified": 1,
        "staging.record_cleaned": 1,
    }


def test_two_workers_and_a_thousand_records_approved_at_once_do_each_step_once(
    sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    ids = stage(sql, 1000, approve=False)
    start_orchestrator()
    start_worker("--name", "w1")
    start_worker("--name", "w2")
    wait_until(
        lambda: (
            scalar(
                sql,
                "SELECT count(*) FROM conveyor.queue_heartbeat WHERE component IN ('w1', 'w2')"
                " AND last_beat_at IS NOT NULL",
            )
            == 2
        ),
        timeout=60,
    )

    sql.execute(
        "SELECT iu_core.fn_iu_op_approve(id, 'operator') FROM unnest(%s::bigint[]) AS id", (ids,)
    )
    wait_until(lambda: all_cleaned(sql, ids), timeout=600, interval=0.5)

    assert step_jobs(sql, ids) == {(kind, "succeeded"): 1000 for kind in STEPS}
    counts = sql.execute(
        "SELECT count(*), count(DISTINCT t.record_id) FROM conveyor.pilot_cut_target AS t"
        " WHERE t.record_id = ANY(%s)",
        (ids,),
    ).fetchone()
    assert counts == (1000, 1000)
    assert events(sql, ids) == {
        "staging.record_marked": 1000,
        "staging.record_approved": 1000,
        "staging.record_consumed": 1000,
        "staging.record_verified": 1000,
        "staging.record_cleaned": 1000,
    }
    assert scalar(sql, "SELECT count(*) FROM conveyor.job_dead_letter") == 0
    by_worker = dict(
        sql.execute(
            "SELECT r.cut_by, count(*) FROM iu_core.iu_staging_record AS r"
            " WHERE r.id = ANY(%s) GROUP BY r.cut_by",
            (ids,),
        ).fetchall()
    )
    assert set(by_worker) == {"w1", "w2"}


def test_a_cut_in_flight_when_the_pilot_is_switched_off_finishes_and_the_next_step_waits(
    pilot_dsn: str, sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    start_orchestrator()
    with psycopg.connect(pilot_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        start_worker("--name", "inflight", app="pilotapps:blocking")
        [record_id] = stage(sql, 1)
        wait_until(lambda: _blocked_backend(sql), timeout=60)  # inside the cut, past the flag
        set_flag(sql, "pilot.cut.enabled", False)
        holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))
    try:
        wait_until(lambda: statuses(sql, [record_id]) == {"cut": 1}, timeout=60)
        # the verify job is enqueued and refused (snoozed), the record waits at cut
        wait_until(
            lambda: (
                scalar(
                    sql,
                    "SELECT count(*) FROM conveyor.job_queue AS jq"
                    " WHERE jq.kind = 'staging.verify_cut' AND jq.status = 'queued'"
                    " AND jq.run_at > now()"
                    " AND (jq.payload ->> 'record_id')::bigint = %s",
                    (record_id,),
                )
                == 1
            ),
            timeout=60,
        )
        assert statuses(sql, [record_id]) == {"cut": 1}
    finally:
        set_flag(sql, "pilot.cut.enabled", True)
    wait_until(lambda: all_cleaned(sql, [record_id]), timeout=60)
    assert step_jobs(sql, [record_id]) == {(kind, "succeeded"): 1 for kind in STEPS}
