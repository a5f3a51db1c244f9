"""fn_job_claim's plan on a realistic backlog: it must walk job_queue_claim_idx and stop after the
batch, so the rows it touches are bounded by the batch, not by the backlog, and job_queue is never
read with a Seq Scan. The plans checked are the function's own: auto_explain (with
log_nested_statements) reports every statement fn_job_claim runs to this session as a notice,
including the cached generic plan plpgsql may switch to after five calls. Each claim runs inside
BEGIN … ROLLBACK, so every call faces the same seeded backlog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from helpers import SEARCH_PATH_OPTION, scalar, set_flag

READY = 50_000  # queued and due, in queue 'plan', kinds plan.k0 … plan.k4 interleaved
FUTURE = 10_000  # queued in 'plan' but due tomorrow
FINISHED = 20_000  # succeeded jobs of 'plan' (not in the claim index)
OTHER = 5_000  # queued and due in queue 'plan-other'
KINDS = 5
CALLS = 8  # more than the five custom plans plpgsql tries before it may cache a generic one


@pytest.fixture(scope="module")
def backlog(dsn: str) -> Iterator[str]:
    """The module database seeded with a large backlog (superuser INSERTs), analyzed."""
    with psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) as conn:
        set_flag(conn, "queue.job_substrate.enabled", True)
        conn.execute(
            "INSERT INTO job_queue (queue, kind, payload, status, run_at)"
            " SELECT 'plan', 'plan.k' || (g %% %s), jsonb_build_object('n', g), 'queued',"
            "        now() - interval '1 day' + g * interval '1 second'"
            "   FROM generate_series(1, %s) AS g",
            (KINDS, READY),
        )
        conn.execute(
            "INSERT INTO job_queue (queue, kind, payload, status, run_at)"
            " SELECT 'plan', 'plan.k0', '{}', 'queued', now() + interval '1 day'"
            "   FROM generate_series(1, %s)",
            (FUTURE,),
        )
        conn.execute(
            "INSERT INTO job_queue (queue, kind, payload, status, run_at, attempts, lease_token,"
            "                       finished_at)"
            " SELECT 'plan', 'plan.k0', '{}', 'succeeded', now() - interval '2 days', 1,"
            "        gen_random_uuid(), now() - interval '1 day'"
            "   FROM generate_series(1, %s)",
            (FINISHED,),
        )
        conn.execute(
            "INSERT INTO job_queue (queue, kind, payload, status, run_at)"
            " SELECT 'plan-other', 'plan.k0', '{}', 'queued', now() - interval '1 hour'"
            "   FROM generate_series(1, %s)",
            (OTHER,),
        )
        conn.execute("ANALYZE job_queue")
    yield dsn


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """*plan* and every node below it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def claim_with_plans(
    dsn: str, calls: int, arguments: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Call fn_job_claim(*arguments*) *calls* times in one session, each call rolled back.

    Returns, per call, its answer and the plans (root nodes) of every statement it ran.
    """
    notices: list[str] = []
    results = []
    with psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) as conn:
        conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("log_min_duration", "0"),
            ("log_analyze", "on"),
            ("log_buffers", "on"),
            ("log_timing", "off"),
            ("log_nested_statements", "on"),
            ("log_format", "json"),
            ("log_level", "notice"),
        ):
            conn.execute(f"SET auto_explain.{setting} = {value}")
        for _ in range(calls):
            notices.clear()
            with conn.transaction(force_rollback=True):
                answer = scalar(conn, f"SELECT fn_job_claim({arguments})")
            plans = [
                json.loads(message.split("plan:", 1)[1])["Plan"]
                for message in notices
                if "plan:" in message
            ]
            results.append((answer, plans))
    return results


def claim_scan(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job_queue scans under the claim's LockRows (the claim statement is the only one that
    locks rows); asserts there is exactly one such statement."""
    locking = [plan for plan in plans if any(n["Node Type"] == "LockRows" for n in nodes(plan))]
    assert len(locking) == 1, f"expected one locking statement, got {len(locking)}"
    lock_rows = [n for n in nodes(locking[0]) if n["Node Type"] == "LockRows"]
    return [n for lock in lock_rows for n in nodes(lock) if n.get("Relation Name") == "job_queue"]


def rows_visited(scan: dict[str, Any]) -> float:
    """Rows a scan node produced or filtered out, over all its loops."""
    per_loop = scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
    return float(per_loop * scan["Actual Loops"])


def assert_bounded_claims(
    results: list[tuple[dict[str, Any], list[dict[str, Any]]]], batch: int, max_rows: float
) -> None:
    for call_number, (answer, plans) in enumerate(results, start=1):
        assert answer["ok"] is True
        assert len(answer["jobs"]) == batch, f"call {call_number}"
        seq_scans = [
            n
            for plan in plans
            for n in nodes(plan)
            if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "job_queue"
        ]
        assert seq_scans == [], f"call {call_number}: Seq Scan on job_queue"
        scans = claim_scan(plans)
        assert scans, f"call {call_number}: no job_queue scan under LockRows"
        for scan in scans:
            assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan["Node Type"]
            assert scan["Index Name"] == "job_queue_claim_idx"
        visited = sum(rows_visited(scan) for scan in scans)
        assert visited <= max_rows, f"call {call_number}: {visited} rows visited for batch {batch}"
        blocks = sum(s["Shared Hit Blocks"] + s["Shared Read Blocks"] for s in scans)
        assert blocks <= 20 + max_rows, f"call {call_number}: {blocks} buffers for batch {batch}"


@pytest.mark.parametrize("batch", [1, 10, 100])
def test_claim_reads_the_claim_index_and_visits_rows_bounded_by_the_batch(
    backlog: str, batch: int
) -> None:
    results = claim_with_plans(
        backlog, CALLS, f"worker => 'w', queues => '{{plan}}', batch => {batch}"
    )

    assert_bounded_claims(results, batch, max_rows=2 * batch)


def test_claim_with_a_kind_filter_visits_rows_bounded_by_batch_over_selectivity(
    backlog: str,
) -> None:
    # plan.k3 is every fifth ready row: about KINDS rows are stepped over per job claimed.
    results = claim_with_plans(
        backlog, CALLS, "worker => 'w', queues => '{plan}', kinds => '{plan.k3}', batch => 10"
    )

    assert_bounded_claims(results, 10, max_rows=KINDS * 10 + KINDS)


def test_claim_from_two_queues_visits_rows_bounded_by_batch_times_queues(backlog: str) -> None:
    results = claim_with_plans(
        backlog, CALLS, "worker => 'w', queues => '{plan,plan-other}', batch => 10"
    )

    assert_bounded_claims(results, 10, max_rows=2 * 10 * 2)


def test_the_seeded_backlog_is_large_enough_to_expose_a_scan(backlog: str) -> None:
    with psycopg.connect(backlog, options=SEARCH_PATH_OPTION) as conn:
        queued = scalar(conn, "SELECT count(*) FROM job_queue WHERE status = 'queued'")
        pages = scalar(conn, "SELECT relpages FROM pg_class WHERE oid = 'job_queue'::regclass")

    assert queued == READY + FUTURE + OTHER
    assert pages > 1000  # a full read would cost far more buffers than the bounds above


def test_the_claim_is_never_jit_compiled_however_costly_its_generic_plan_looks(
    backlog: str,
) -> None:
    # The generic plan reckons LIMIT batch at a tenth of the queue: past ~300,000 ready jobs its
    # cost passed jit_above_cost, and every claim spent ~18 ms compiling a 2 ms statement. Here
    # the thresholds are 0, so any statement would be compiled unless the claim turns JIT off.
    with psycopg.connect(backlog, autocommit=True, options=SEARCH_PATH_OPTION) as conn:
        if not scalar(conn, "SELECT pg_jit_available()"):
            pytest.skip("this server has no JIT provider: nothing to compile")
        compiled: list[str] = []
        conn.add_notice_handler(
            lambda diagnostic: compiled.append(diagnostic.message_primary or "")
        )
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "jit = on",
            "jit_above_cost = 0",
            "jit_inline_above_cost = 0",
            "jit_optimize_above_cost = 0",
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_level = notice",
        ):
            conn.execute(f"SET {setting}")
        conn.execute("SELECT count(*) FROM job_queue WHERE queue = 'plan-other'")
        assert any("JIT:" in notice for notice in compiled)  # the session does compile
        compiled.clear()

        for _ in range(CALLS):
            with conn.transaction(force_rollback=True):
                answer = scalar(
                    conn, "SELECT fn_job_claim(worker => 'w', queues => '{plan}', batch => 100)"
                )
                assert len(answer["jobs"]) == 100

    inside = [notice for notice in compiled if "job_queue" in notice]
    assert inside, "auto_explain reported no statement of the claim"
    assert not [notice for notice in inside if "JIT:" in notice]
