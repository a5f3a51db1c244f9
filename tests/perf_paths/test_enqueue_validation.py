"""enqueue_many validates set-wise: the one validation helper (fn_job__enqueue_problem) is a
LANGUAGE sql CASE the planner inlines into the batch query, and it still says the same as
fn_job_enqueue for every rule."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

BAD: list[dict[str, Any]] = [
    {"kind": ""},
    {"kind": "x" * 129},
    {"kind": "-starts-with-dash"},
    {"kind": "ok", "queue": "Upper"},
    {"kind": "ok", "queue": "q" * 64},
    {"kind": "ok", "payload": [1, 2]},
    {"kind": "ok", "payload": {"a": {"b": {"c": {"d": 1}}}}},
    {"kind": "ok", "payload": {"blob": "x" * 400}},
    {"kind": "ok", "priority": 1001},
    {"kind": "ok", "max_attempts": 0},
    {"kind": "ok", "run_at": "infinity"},
    {"kind": "ok", "run_at": "2999-01-01T00:00:00Z"},
    {"kind": "ok", "idempotency_key": ""},
    {"kind": "ok", "idempotency_key": "k" * 256},
]


def error_of(conn: Conn, sql: str, params: tuple[Any, ...]) -> str:
    conn.execute("SAVEPOINT probe")
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            conn.execute(sql, params)
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT probe")
    diag = caught.value.diag
    return f"{diag.message_primary} | {diag.message_hint}"


def small_limits(conn: Conn) -> None:
    conn.execute("SELECT fn_config_set('queue.payload.max_bytes', '300')")
    conn.execute("SELECT fn_config_set('queue.payload.max_depth', '3')")


def test_the_helper_is_inlined_into_a_set_query(jobs: Conn) -> None:
    plan = "\n".join(
        row[0]
        for row in jobs.execute(
            "EXPLAIN (VERBOSE) SELECT conveyor.fn_job__enqueue_problem('k' || g, '{}'::jsonb,"
            " NULL, g, NULL, NULL, NULL, 100, 3) FROM generate_series(1, 2) AS g"
        ).fetchall()
    )

    assert "fn_job__enqueue_problem" not in plan
    assert "CASE" in plan


@pytest.mark.parametrize("job", BAD, ids=[str(i) for i in range(len(BAD))])
def test_one_and_many_report_the_same_problem(jobs: Conn, job: dict[str, Any]) -> None:
    small_limits(jobs)
    one = error_of(
        jobs,
        "SELECT fn_job_enqueue(kind => %s::text, payload => %s::jsonb, queue => %s::text,"
        " priority => %s::integer, run_at => %s::timestamptz, idempotency_key => %s::text,"
        " max_attempts => %s::integer)",
        (
            job["kind"],
            Jsonb(job["payload"]) if "payload" in job else None,
            job.get("queue"),
            job.get("priority"),
            job.get("run_at"),
            job.get("idempotency_key"),
            job.get("max_attempts"),
        ),
    )
    many = error_of(
        jobs, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb([{"kind": "fine"}, job]),)
    )

    assert one.startswith("fn_job_enqueue: ")
    assert many.startswith("fn_job_enqueue_many: jobs[1].")
    problem = many.removeprefix("fn_job_enqueue_many: jobs[1].")
    assert one.removeprefix("fn_job_enqueue: ") == problem


def test_a_valid_batch_passes_and_keeps_its_order(jobs: Conn) -> None:
    items = [{"kind": "perf.ok", "payload": {"n": n}, "priority": n % 3} for n in range(50)]
    answer = jobs.execute("SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(items),)).fetchone()

    assert answer is not None
    ids = answer[0]["job_ids"]
    assert len(ids) == 50 and ids == sorted(ids)
