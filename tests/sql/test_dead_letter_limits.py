"""Dead letters by the schema: at most one open dead letter per job (a unique partial index, raced
over every path that dead-letters), and the release cap — a job released unfinished more than
queue.retry.max_releases times is dead-lettered with reason max_releases_exceeded. Plain SQL on
real PostgreSQL; the module's database gets phase 2 (the reaper) on top of the template."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import SEARCH_PATH_OPTION, apply_phases, scalar, set_flag, unique

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module", autouse=True)
def phase2(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2,))
        set_flag(conn, "queue.job_substrate.enabled", True)
        set_flag(conn, "queue.lease_reaper.enabled", True)


def enqueue(conn: Conn, queue: str, max_attempts: int = 5) -> int:
    answer = scalar(
        conn,
        "SELECT fn_job_enqueue(kind => 'test.dl', payload => '{}', queue => %s,"
        " max_attempts => %s)",
        (queue, max_attempts),
    )
    return int(answer["job_id"])


def claim_one(conn: Conn, queue: str) -> dict[str, Any]:
    answer = scalar(
        conn, "SELECT fn_job_claim(worker => 'w1', queues => ARRAY[%s], batch => 1)", (queue,)
    )
    assert len(answer["jobs"]) == 1, answer
    return dict(answer["jobs"][0])


def open_dead_letters(conn: Conn, job_id: int) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM job_dead_letter WHERE job_id = %s AND resolved_at IS NULL",
            (job_id,),
        )
    )


# --------------------------------------------------------------------------- one open dead letter


def test_the_schema_refuses_a_second_open_dead_letter_for_one_job(dsn: str) -> None:
    queue = unique("dl")
    with psycopg.connect(dsn, options=SEARCH_PATH_OPTION) as conn:
        enqueue(conn, queue)
        job = claim_one(conn, queue)
        scalar(
            conn,
            "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => 'x')",
            (job["job_id"], job["lease_token"]),
        )
        copy = (
            "INSERT INTO job_dead_letter (job_id, queue, kind, payload, job, reason, attempts)"
            " SELECT dl.job_id, dl.queue, dl.kind, dl.payload, dl.job, dl.reason, dl.attempts"
            "   FROM job_dead_letter AS dl WHERE dl.job_id = %s"
        )
        with pytest.raises(errors.UniqueViolation, match="job_dead_letter_one_open_idx"):
            conn.execute(copy, (job["job_id"],))
        conn.rollback()


def test_racing_every_dead_letter_path_leaves_exactly_one_open_dead_letter(dsn: str) -> None:
    """fail_permanent, fail_transient (last attempt) and the reaper (lease expired) at once."""
    queue = unique("race")
    with psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) as setup:
        rounds = []
        for _ in range(15):
            job_id = enqueue(setup, queue, max_attempts=1)
            rounds.append(claim_one(setup, queue))
            assert rounds[-1]["job_id"] == job_id
        setup.execute(
            "UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE queue = %s",
            (queue,),
        )
    calls = [
        "SELECT fn_job_fail_permanent(job_id => %(job_id)s, lease_token => %(lease_token)s,"
        " error => 'permanent')",
        "SELECT fn_job_fail_transient(job_id => %(job_id)s, lease_token => %(lease_token)s,"
        " error => 'transient')",
        "SELECT fn_job_lease_reaper()",
    ]
    failures: list[BaseException] = []
    connections = [psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) for _ in calls]
    try:
        for job in rounds:
            barrier = threading.Barrier(len(calls))

            def race(
                conn: Conn,
                statement: str,
                job: dict[str, Any] = job,
                barrier: threading.Barrier = barrier,
            ) -> None:
                barrier.wait(timeout=30)
                try:
                    conn.execute(statement, job)
                except psycopg.Error as error:  # a second open dead letter would land here
                    failures.append(error)

            threads = [
                threading.Thread(target=race, args=(c, s))
                for c, s in zip(connections, calls, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        with psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) as check:
            for job in rounds:
                assert open_dead_letters(check, job["job_id"]) == 1, job
            assert scalar(check, "SELECT count(*) FROM job_queue WHERE queue = %s", (queue,)) == 0
    finally:
        for conn in connections:
            conn.close()
    assert failures == []


# --------------------------------------------------------------------------- the release cap


def test_the_release_cap_ships_at_100(jobs: Conn) -> None:
    value = scalar(jobs, "SELECT value FROM dot_config WHERE key = 'queue.retry.max_releases'")
    assert value == 100


RELEASE = "SELECT fn_job_release(job_id => %s, lease_token => %s)"
SNOOZE = "SELECT fn_job_snooze(job_id => %s, lease_token => %s, seconds => 0)"


def test_a_job_released_past_max_releases_is_dead_lettered_with_its_own_reason(
    jobs: Conn,
) -> None:
    queue = unique("rel")
    jobs.execute(
        "UPDATE dot_config SET value = %s WHERE key = 'queue.retry.max_releases'", (Jsonb(3),)
    )
    job_id = enqueue(jobs, queue)
    for _ in range(3):
        job = claim_one(jobs, queue)
        answer = scalar(jobs, RELEASE, (job_id, job["lease_token"]))
        assert answer["status"] == "queued", answer
    counts = jobs.execute("SELECT releases, attempts FROM job_queue WHERE id = %s", (job_id,))
    assert counts.fetchone() == (3, 0)

    job = claim_one(jobs, queue)
    answer = scalar(jobs, RELEASE, (job_id, job["lease_token"]))

    assert answer["status"] == "dead_letter" and answer["reason"] == "max_releases_exceeded"
    row = jobs.execute(
        "SELECT reason, error, (job->>'releases')::int FROM job_dead_letter WHERE id = %s",
        (answer["dead_letter_id"],),
    ).fetchone()
    assert row == (
        "max_releases_exceeded",
        "released unfinished 3 times (queue.retry.max_releases = 3)",
        3,
    )
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE id = %s", (job_id,)) == 0


def test_snoozes_do_not_count_toward_the_release_cap(jobs: Conn) -> None:
    queue = unique("rel")
    jobs.execute(
        "UPDATE dot_config SET value = %s WHERE key = 'queue.retry.max_releases'", (Jsonb(1),)
    )
    job_id = enqueue(jobs, queue)
    for _ in range(3):
        job = claim_one(jobs, queue)
        assert scalar(jobs, SNOOZE, (job_id, job["lease_token"]))["status"] == "queued"

    job = claim_one(jobs, queue)
    answer = scalar(jobs, RELEASE, (job_id, job["lease_token"]))

    assert answer["status"] == "queued", answer  # the first release: within the cap of 1
    row = jobs.execute("SELECT releases FROM job_queue WHERE id = %s", (job_id,)).fetchone()
    assert row == (1,)


def test_a_stale_token_past_the_cap_is_still_only_lease_lost(jobs: Conn) -> None:
    queue = unique("rel")
    jobs.execute(
        "UPDATE dot_config SET value = %s WHERE key = 'queue.retry.max_releases'", (Jsonb(0),)
    )
    job_id = enqueue(jobs, queue)
    claim_one(jobs, queue)

    answer = scalar(
        jobs,
        "SELECT fn_job_release(job_id => %s, lease_token => gen_random_uuid())",
        (job_id,),
    )

    assert answer == {"refused": True, "reason": "lease_lost", "job_id": job_id}
    assert scalar(jobs, "SELECT status FROM job_queue WHERE id = %s", (job_id,)) == "in_progress"
