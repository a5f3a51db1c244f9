"""Limits in the claim (phase 8), called with plain SQL: caps, rates, per-key caps, fairness
between keys, the flag, bad input, and the unlimited path left as it was."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conveyor import jobs
from helpers import scalar, set_flag

Conn = psycopg.Connection[Any]


def enqueue(sql: Conn, queue: str, count: int, key: str | None = None, **extra: Any) -> None:
    run_at = extra.get("run_at", "now()")
    sql.execute(
        "INSERT INTO job_queue (queue, kind, payload, status, run_at, concurrency_key)"
        f" SELECT %s, 'test.noop', '{{}}', 'queued', {run_at}, %s FROM generate_series(1, %s)",
        (queue, key, count),
    )


def claim(sql: Conn, queue: str, batch: int) -> list[dict[str, Any]]:
    answer = scalar(
        sql, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], batch => %s)", (queue, batch)
    )
    assert answer["ok"] is True, answer
    jobs: list[dict[str, Any]] = answer["jobs"]
    return jobs


def finish(sql: Conn, jobs: list[dict[str, Any]]) -> None:
    if jobs:
        sql.execute(
            "SELECT fn_job_complete_many(%s::bigint[], %s::uuid[])",
            ([j["job_id"] for j in jobs], [j["lease_token"] for j in jobs]),
        )


def keys_of(sql: Conn, jobs: list[dict[str, Any]]) -> list[str | None]:
    rows = sql.execute(
        "SELECT jq.concurrency_key FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(id, ord)"
        " JOIN job_queue AS jq ON jq.id = u.id ORDER BY u.ord",
        ([j["job_id"] for j in jobs],),
    ).fetchall()
    return [row[0] for row in rows]


def test_a_queue_cap_leases_no_more_than_the_cap_until_jobs_finish(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 10)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 3)", (queue,))

    first = claim(sql, queue, 10)
    assert len(first) == 3
    assert claim(sql, queue, 10) == []
    finish(sql, first[:2])

    assert len(claim(sql, queue, 10)) == 2


def test_a_key_cap_of_one_leases_one_job_per_key(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 5, "a")
    enqueue(sql, queue, 5, "b")
    enqueue(sql, queue, 2)
    scalar(sql, "SELECT fn_job_key_limit(%s, NULL, max_in_progress => 1)", (queue,))

    jobs = claim(sql, queue, 10)

    keys = keys_of(sql, jobs)
    assert sorted(k for k in keys if k) == ["a", "b"]
    assert keys.count(None) == 2  # jobs without a key are not capped per key
    assert claim(sql, queue, 10) == []


def test_a_named_key_cap_overrides_the_cap_of_every_key(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 5, "a")
    enqueue(sql, queue, 5, "b")
    scalar(sql, "SELECT fn_job_key_limit(%s, NULL, max_in_progress => 1)", (queue,))
    scalar(sql, "SELECT fn_job_key_limit(%s, 'b', max_in_progress => 3)", (queue,))

    keys = keys_of(sql, claim(sql, queue, 10))

    assert sorted(k for k in keys if k) == ["a", "b", "b", "b"]


def test_a_rate_never_lets_more_claims_through_than_the_bucket_allows(
    sql: Conn, queue: str
) -> None:
    enqueue(sql, queue, 5000)
    scalar(sql, "SELECT fn_job_queue_limit(%s, rate => 200, per_seconds => 1)", (queue,))
    set_at = scalar(sql, "SELECT refilled_at FROM job_queue_limit WHERE queue = %s", (queue,))

    claimed = 0
    for _ in range(400):
        claimed += len(claim(sql, queue, 50))
    elapsed = scalar(sql, "SELECT extract(epoch FROM clock_timestamp() - %s)", (set_at,))

    # burst 10 (5 % of a second's 200) at the start, then 200 per second at most.
    assert claimed <= 10 + 200 * float(elapsed) + 1
    assert claimed > 0


def test_a_key_rate_limits_that_key_only(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 50, "slow")
    enqueue(sql, queue, 50, "fast")
    scalar(sql, "SELECT fn_job_key_limit(%s, 'slow', rate => 1, per_seconds => 3600)", (queue,))

    keys = [k for _ in range(10) for k in keys_of(sql, claim(sql, queue, 10))]

    assert keys.count("slow") == 1
    assert keys.count("fast") == 50


@pytest.mark.parametrize("batch", [1, 10])
def test_one_big_key_does_not_starve_fifty_small_keys(sql: Conn, queue: str, batch: int) -> None:
    # The big key's 20,000 jobs are all older than every small key's.
    enqueue(sql, queue, 20_000, "big", run_at="now() - interval '1 day'")
    for n in range(50):
        enqueue(sql, queue, 10, f"small-{n:02}")
    sql.execute("ANALYZE job_queue")
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (queue,))

    order: list[str | None] = []
    while len(order) < 2_000:
        jobs = claim(sql, queue, batch)
        order += keys_of(sql, jobs)
        finish(sql, jobs)

    assert sum(1 for k in order[:2_000] if k != "big") == 500


def test_keys_are_served_round_robin_across_claims_of_one(sql: Conn, queue: str) -> None:
    for key in ("a", "b", "c"):
        enqueue(sql, queue, 3, key)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 100)", (queue,))

    order = [k for _ in range(6) for k in keys_of(sql, claim(sql, queue, 1))]

    assert order == ["a", "b", "c", "a", "b", "c"]


def test_a_claim_takes_a_turn_of_an_eighth_of_its_batch_per_key_and_shares_few_keys_evenly(
    sql: Conn, queue: str
) -> None:
    for n in range(20):
        enqueue(sql, queue, 20, f"many-{n:02}")
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (queue,))

    many = keys_of(sql, claim(sql, queue, 16))

    # a turn is 2 of 16; the claim looks at 10 keys, each gives its first, then 6 their second
    assert sorted(many.count(k) for k in set(many)) == [1] * 4 + [2] * 6

    other = queue + "-few"
    enqueue(sql, other, 20, "a")
    enqueue(sql, other, 20, "b")
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (other,))

    few = keys_of(sql, claim(sql, other, 16))

    assert (few.count("a"), few.count("b")) == (8, 8)


def test_claims_at_once_take_each_keys_next_rows_not_each_others(
    sql: Conn, queue: str, limits_dsn: str
) -> None:
    for key in ("a", "b", "c", "d"):
        enqueue(sql, queue, 20, key)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (queue,))

    # Another claim between its pick (before the queue's lock) and its commit: the rows it
    # picked stay locked while its transaction is open.
    with psycopg.connect(limits_dsn, options="-c search_path=conveyor,public") as other:
        held = scalar(
            other,
            "SELECT ids FROM fn_job__claim_keys(%s, NULL, NULL, NULL, NULL, 8, NULL, false, now())",
            (queue,),
        )
        taken = claim(sql, queue, 8)
        other.rollback()

    assert len(held) == len(taken) == 8
    assert not set(held) & {j["job_id"] for j in taken}
    assert sorted(keys_of(sql, taken), key=str) == ["a", "a", "b", "b", "c", "c", "d", "d"]


def test_jobs_without_a_key_take_their_turn_among_the_keys(sql: Conn, queue: str) -> None:
    for key in ("a", "b", "c"):
        enqueue(sql, queue, 10, key)
    enqueue(sql, queue, 10)  # no key
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (queue,))

    rounds = [keys_of(sql, claim(sql, queue, 4)) for _ in range(5)]

    assert all(sorted(r, key=str) == [None, "a", "b", "c"] for r in rounds), rounds


def test_the_in_progress_bound_counts_again_once_jobs_finish_near_the_cap(
    sql: Conn, queue: str
) -> None:
    # claims keep an upper bound of the jobs in progress (counted, plus every job claimed
    # since); near the cap they count again, so finished jobs give their slots back
    enqueue(sql, queue, 30)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 12)", (queue,))
    first = claim(sql, queue, 4)
    second = claim(sql, queue, 4)
    assert len(first) == len(second) == 4
    bound = "SELECT running_bound FROM job_queue_limit WHERE queue = %s"
    assert scalar(sql, bound, (queue,)) == 8
    finish(sql, first + second)

    assert len(claim(sql, queue, 8)) == 8  # the bound (8) would have allowed 4: it counted
    assert scalar(sql, bound, (queue,)) == 8
    assert len(claim(sql, queue, 8)) == 4  # 8 in progress, cap 12


def test_the_in_progress_bound_counts_again_after_the_flag_was_off(sql: Conn, queue: str) -> None:
    # while the flag is off claims ignore the limits and do not add to the bound: switching
    # it on (fn_config_set stamps updated_at) makes the next claim count, not trust the bound
    enqueue(sql, queue, 120)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 100)", (queue,))
    assert len(claim(sql, queue, 3)) == 3
    scalar(sql, "SELECT fn_config_set('queue.limits.enabled', 'false')")
    try:
        assert len(claim(sql, queue, 90)) == 90
    finally:
        scalar(sql, "SELECT fn_config_set('queue.limits.enabled', 'true')")

    assert len(claim(sql, queue, 10)) == 7  # 93 in progress, cap 100; the bound said 3


def test_limits_are_ignored_while_the_flag_is_off_and_setting_them_is_refused(
    sql: Conn, queue: str
) -> None:
    enqueue(sql, queue, 5)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1)", (queue,))
    set_flag(sql, "queue.limits.enabled", False)
    try:
        assert len(claim(sql, queue, 5)) == 5
        answer = scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 2)", (queue,))
    finally:
        set_flag(sql, "queue.limits.enabled", True)

    assert answer == {"refused": True, "reason": "limits_disabled", "flag": "queue.limits.enabled"}


def test_clearing_every_limit_removes_the_queue_row_and_the_cap(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 5)
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1)", (queue,))

    answer = scalar(sql, "SELECT fn_job_queue_limit(%s)", (queue,))

    assert answer == {"ok": True, "queue": queue, "limited": False}
    assert scalar(sql, "SELECT count(*) FROM job_queue_limit WHERE queue = %s", (queue,)) == 0
    assert len(claim(sql, queue, 5)) == 5


def test_v_job_limits_shows_the_cap_and_the_jobs_in_progress(sql: Conn, queue: str) -> None:
    enqueue(sql, queue, 5, "a")
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 4, rate => 100)", (queue,))
    scalar(sql, "SELECT fn_job_key_limit(%s, 'a', max_in_progress => 2)", (queue,))
    claim(sql, queue, 5)

    rows = sql.execute(
        "SELECT concurrency_key, max_in_progress, in_progress, rate FROM v_job_limits"
        " WHERE queue = %s ORDER BY concurrency_key NULLS FIRST",
        (queue,),
    ).fetchall()

    assert rows == [(None, 4, 2, 100), ("a", 2, 2, None)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("fn_job_queue_limit('Bad Queue', max_in_progress => 1)", "is not a queue name"),
        ("fn_job_queue_limit('q', max_in_progress => 0)", "max_in_progress is 0"),
        ("fn_job_queue_limit('q', rate => 0)", "rate is 0"),
        ("fn_job_queue_limit('q', per_seconds => 1)", "per_seconds needs a rate"),
        ("fn_job_queue_limit('q', rate => 5, per_seconds => 0)", "per_seconds is 0"),
        ("fn_job_key_limit('q', NULL, rate => 5)", "a rate needs a concurrency_key"),
        ("fn_job_key_limit('q', '', max_in_progress => 1)", "concurrency_key must be"),
        ("fn_job_enqueue('k', concurrency_key => '')", "concurrency_key must be"),
    ],
)
def test_bad_input_is_an_error_naming_the_argument(sql: Conn, call: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        sql.execute(f"SELECT {call}")


def test_enqueue_stores_the_concurrency_key(sql: Conn, queue: str) -> None:
    answer = scalar(
        sql,
        "SELECT fn_job_enqueue('test.noop', queue => %s, concurrency_key => 'tenant-1')",
        (queue,),
    )

    key = scalar(sql, "SELECT concurrency_key FROM job_queue WHERE id = %s", (answer["job_id"],))
    assert key == "tenant-1"


def test_the_python_client_enqueues_with_a_concurrency_key(sql: Conn, queue: str) -> None:
    job_id = jobs.enqueue(sql, "test.noop", queue=queue, concurrency_key="tenant-2")
    plain = jobs.enqueue(sql, "test.noop", queue=queue)

    keys = sql.execute(
        "SELECT concurrency_key FROM job_queue WHERE id IN (%s, %s) ORDER BY id", (job_id, plain)
    ).fetchall()
    assert keys == [("tenant-2",), (None,)]


@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "keyed"])
def test_a_limited_claim_walks_indexes_whatever_the_statistics_say(
    sql: Conn, queue: str, keyed: bool
) -> None:
    # Analyzed statistics where the queue's jobs all lack a key (or all have one) once made the
    # claim's generic plans scan a key's rows by bitmap and sort them, in parallel, JIT-compiled:
    # about 100 ms a claim instead of 1. auto_explain shows the plan of every statement inside.
    enqueue(sql, queue, 2_000, "k" if keyed else None)
    sql.execute("ANALYZE job_queue")
    scalar(sql, "SELECT fn_job_queue_limit(%s, max_in_progress => 1000)", (queue,))
    plans: list[str] = []
    sql.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    sql.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice"):
        sql.execute(f"SET auto_explain.{setting}")

    for _ in range(8):  # past plpgsql's first custom plans
        with sql.transaction(force_rollback=True):
            assert len(claim(sql, queue, 32)) == 32

    inside = "\n".join(plans)
    assert "job_queue_key_idx" in inside or not keyed
    for node in ("Bitmap Heap Scan on job_queue ", "Seq Scan on job_queue ", "Gather", "JIT:"):
        assert node not in inside, inside
