"""Phase 2, retry / lease / DLQ: the backoff inside fn_job_fail_transient, the lease reaper,
dead-letter replay and retention pruning. Plain SQL on real PostgreSQL. The module's database
gets phase 2 on top of the template's phases 0 and 1 (through the runner, once). One-session
tests run in the rolled-back `db` transaction; tests of SKIP LOCKED and row locks use two
connections and committed rows in a queue of their own, removed afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from conveyor.phases import fingerprint, runner
from helpers import (
    SEARCH_PATH_OPTION,
    apply_phase,
    apply_phases,
    scalar,
    set_flag,
    unique,
    wait_until,
)

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]

SUBSTRATE = "queue.job_substrate.enabled"
REAPER = "queue.lease_reaper.enabled"
BACKOFF = "queue.retry.backoff_enabled"
LEASE_LOST = "lease_lost"


@pytest.fixture(scope="module", autouse=True)
def phase2(dsn: str) -> None:
    """Apply phase 2 to this module's database (phases 0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2,))


# --------------------------------------------------------------------------- helpers


def set_config(conn: Conn, key: str, value: Any) -> None:
    """Insert or change a dot_config key (per-kind keys do not exist until someone sets them)."""
    conn.execute(
        "INSERT INTO dot_config (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, Jsonb(value)),
    )


def enqueue(conn: Conn, kind: str, queue: str, **options: Any) -> int:
    names = ("payload", "priority", "idempotency_key", "max_attempts")
    assert set(options) <= set(names), options
    args = "".join(f", {name} => %({name})s" for name in names if name in options)
    params = {**options, "kind": kind, "queue": queue}
    if "payload" in params:
        params["payload"] = Jsonb(params["payload"])
    answer = scalar(
        conn, f"SELECT fn_job_enqueue(kind => %(kind)s, queue => %(queue)s{args})", params
    )
    assert answer.get("ok"), answer
    return int(answer["job_id"])


def claim(conn: Conn, queue: str, worker: str = "w1", batch: int = 1) -> list[dict[str, Any]]:
    answer = scalar(
        conn,
        "SELECT fn_job_claim(worker => %s, queues => ARRAY[%s], batch => %s)",
        (worker, queue, batch),
    )
    assert answer.get("ok"), answer
    return list(answer["jobs"])


def claim_one(conn: Conn, queue: str, worker: str = "w1") -> dict[str, Any]:
    jobs = claim(conn, queue, worker)
    assert len(jobs) == 1, jobs
    return jobs[0]


def expire_leases(conn: Conn, queue: str) -> None:
    """The workers of *queue* died: their leases ran out a second ago (DB clock)."""
    conn.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second'"
        " WHERE queue = %s AND status = 'in_progress'",
        (queue,),
    )


def make_ready(conn: Conn, job_id: int) -> None:
    """The job's retry delay has passed."""
    conn.execute(
        "UPDATE job_queue SET run_at = now() - interval '1 second' WHERE id = %s", (job_id,)
    )


def reap(conn: Conn, batch: int | None = None) -> dict[str, Any]:
    return dict(scalar(conn, "SELECT fn_job_lease_reaper(batch => %s)", (batch,)))


def fail_transient(
    conn: Conn, job: dict[str, Any], error: str = "boom", retry_in: Any = None
) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s, error => %s,"
            " retry_in_seconds => %s)",
            (job["job_id"], job["lease_token"], error, retry_in),
        )
    )


def fail_permanent(conn: Conn, job: dict[str, Any], error: str = "bad input") -> int:
    answer = scalar(
        conn,
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => %s)",
        (job["job_id"], job["lease_token"], error),
    )
    assert answer.get("ok"), answer
    return int(answer["dead_letter_id"])


def replay(conn: Conn, **arguments: Any) -> dict[str, Any]:
    names = ("dead_letter_id", "kind", "queue", "max_rows", "replayed_by")
    assert set(arguments) <= set(names), arguments
    args = ", ".join(f"{name} => %({name})s" for name in names if name in arguments)
    return dict(scalar(conn, f"SELECT fn_job_dead_letter_replay({args})", arguments))


def prune(conn: Conn, batch: int | None = None) -> dict[str, Any]:
    return dict(scalar(conn, "SELECT fn_job_prune(batch => %s)", (batch,)))


def job_row(conn: Conn, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM job_queue WHERE id = %s", (job_id,)).fetchone()


def dead_letter_row(conn: Conn, dead_letter_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT * FROM job_dead_letter WHERE id = %s", (dead_letter_id,)
        ).fetchone()


def delay_of(conn: Conn, job_id: int) -> float:
    """Seconds from now() (the transaction's time) to the job's run_at."""
    return float(
        scalar(
            conn,
            "SELECT extract(epoch FROM run_at - now()) FROM job_queue WHERE id = %s",
            (job_id,),
        )
    )


def backoff(conn: Conn, attempt: int, base: Any, cap: Any, jitter: Any) -> Decimal:
    value = scalar(
        conn, "SELECT fn_job_backoff_seconds(%s, %s, %s, %s)", (attempt, base, cap, jitter)
    )
    assert isinstance(value, Decimal)
    return value


def invalid(conn: Conn, query: str, params: Any = None) -> psycopg.Error:
    """Run *query* expecting SQLSTATE 22023 with a HINT (in a savepoint); return the error."""
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute(query, params)
    assert caught.value.diag.message_hint, "an invalid argument error must carry a HINT"
    return caught.value


def dead_letter_job(conn: Conn, kind: str, queue: str, **options: Any) -> int:
    """A job of *kind* that failed permanently; returns its dead letter id."""
    enqueue(conn, kind, queue, **options)
    return fail_permanent(conn, claim_one(conn, queue))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def jobs(jobs: Conn) -> Conn:
    """The test's transaction with the substrate and the reaper enabled (rolled back after)."""
    set_flag(jobs, REAPER, True)
    return jobs


@pytest.fixture
def live(dsn: str) -> Iterator[tuple[Connect, str]]:
    """Committed flags (substrate and reaper on), a connection factory and a queue of the test's
    own. Afterwards the connections are closed (releasing any lock a failed test left), the
    queue's jobs and dead letters are deleted and the flags are off again."""
    opened: list[Conn] = []

    def factory(autocommit: bool = True) -> Conn:
        conn = psycopg.connect(dsn, autocommit=autocommit, options=SEARCH_PATH_OPTION)
        opened.append(conn)
        return conn

    queue = unique("live-")
    admin = factory()
    set_flag(admin, SUBSTRATE, True)
    set_flag(admin, REAPER, True)
    try:
        yield factory, queue
    finally:
        for conn in opened[1:]:
            conn.close()
        admin.execute("DELETE FROM job_queue WHERE queue = %s", (queue,))
        admin.execute("DELETE FROM job_dead_letter WHERE queue = %s", (queue,))
        set_flag(admin, SUBSTRATE, False)
        set_flag(admin, REAPER, False)
        admin.close()


# --------------------------------------------------------------------------- backoff numbers


def test_backoff_doubles_from_base_per_attempt_until_the_cap(db: Conn) -> None:
    delays = [backoff(db, attempt, 1, 3600, 0) for attempt in range(1, 21)]

    assert delays == [min(3600, 2 ** (attempt - 1)) for attempt in range(1, 21)]


def test_backoff_at_attempt_1000_and_beyond_is_the_cap_without_overflow(db: Conn) -> None:
    assert backoff(db, 1000, 1, 60, 0) == 60
    assert backoff(db, 2**31 - 1, 1, 60, 0) == 60
    assert backoff(db, 1000, Decimal("1e9"), 315576000, 0) == 315576000


@pytest.mark.parametrize("attempt", [*range(1, 21), 1000])
def test_backoff_jitter_stays_within_its_band_and_under_cap_times_one_plus_jitter(
    db: Conn, attempt: int
) -> None:
    base, cap, jitter = Decimal(1), Decimal(3600), Decimal("0.25")
    exact = min(cap, base * 2 ** (attempt - 1))

    row = db.execute(
        "SELECT min(d), max(d), count(DISTINCT d)"
        "  FROM (SELECT fn_job_backoff_seconds(%s, %s, %s, %s) AS d"
        "          FROM generate_series(1, 300)) AS samples",
        (attempt, base, cap, jitter),
    ).fetchone()
    assert row is not None
    low, high, distinct = row

    assert exact * (1 - jitter) <= low <= high <= exact * (1 + jitter)
    assert low >= 0 and high <= cap * (1 + jitter)
    assert distinct > 1, "jitter must vary the delay"


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "jitter"),
    [
        (0, 1, 60, 0),
        (None, 1, 60, 0),
        (1, -1, 60, 0),
        (1, 1, -5, 0),
        (1, 1, 60, 1.5),
        (1, 1, 60, -0.1),
        (1, None, 60, 0),
    ],
)
def test_backoff_rejects_arguments_out_of_range(
    db: Conn, attempt: Any, base: Any, cap: Any, jitter: Any
) -> None:
    invalid(
        db,
        "SELECT fn_job_backoff_seconds(%s::integer, %s::numeric, %s::numeric, %s::numeric)",
        (attempt, base, cap, jitter),
    )


# --------------------------------------------------------------------------- fail_transient


def fail_and_measure(conn: Conn, queue: str, times: int) -> list[float]:
    """Claim the queue's job and fail it transiently *times* times; the delay of each retry."""
    delays = []
    for _ in range(times):
        job = claim_one(conn, queue)
        answer = fail_transient(conn, job)
        assert answer["status"] == "queued", answer
        delays.append(delay_of(conn, job["job_id"]))
        make_ready(conn, job["job_id"])
    return delays


def test_fail_transient_with_backoff_off_waits_the_fixed_base_at_every_attempt(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, "queue.retry.base_seconds", 7)
    enqueue(jobs, "demo.retry", queue, max_attempts=5)

    assert scalar(jobs, "SELECT value FROM dot_config WHERE key = %s", (BACKOFF,)) is False
    assert fail_and_measure(jobs, queue, 3) == [7, 7, 7]


def test_fail_transient_with_backoff_on_doubles_the_delay_per_attempt(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, BACKOFF, True)
    set_flag(jobs, "queue.retry.base_seconds", 2)
    set_flag(jobs, "queue.retry.cap_seconds", 100)
    set_flag(jobs, "queue.retry.jitter", 0)
    enqueue(jobs, "demo.retry", queue, max_attempts=10)

    assert fail_and_measure(jobs, queue, 7) == [2, 4, 8, 16, 32, 64, 100]


def test_fail_transient_keeps_run_at_between_now_and_the_jittered_cap_over_200_failures(
    jobs: Conn,
) -> None:
    queue = unique("q")
    set_flag(jobs, BACKOFF, True)
    set_flag(jobs, "queue.retry.base_seconds", 1)
    set_flag(jobs, "queue.retry.cap_seconds", 60)
    set_flag(jobs, "queue.retry.jitter", 0.1)
    job_id = enqueue(jobs, "demo.retry", queue, max_attempts=1000)

    delays = fail_and_measure(jobs, queue, 200)
    jobs.execute("UPDATE job_queue SET attempts = 998 WHERE id = %s", (job_id,))
    delays += fail_and_measure(jobs, queue, 1)  # the 999th attempt

    assert all(0 <= delay <= 66 for delay in delays), (min(delays), max(delays))
    assert min(delays[10:]) >= 54  # capped at 60 from the 7th attempt on, less 10% jitter


def test_explicit_retry_in_seconds_wins_over_the_backoff(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, BACKOFF, True)
    set_flag(jobs, "queue.retry.base_seconds", 2)
    enqueue(jobs, "demo.retry", queue)
    job = claim_one(jobs, queue)

    fail_transient(jobs, job, retry_in=Decimal("42.5"))

    assert delay_of(jobs, job["job_id"]) == 42.5


def test_per_kind_max_attempts_setting_limits_the_retries(jobs: Conn) -> None:
    queue, kind = unique("q"), unique("demo.flaky_")
    set_config(jobs, f"queue.retry.max_attempts.{kind}", 2)  # the default stays 5
    set_flag(jobs, "queue.retry.base_seconds", 0)
    enqueue(jobs, kind, queue)

    first = fail_transient(jobs, claim_one(jobs, queue))
    second = fail_transient(jobs, claim_one(jobs, queue))

    assert first["status"] == "queued"
    assert second["status"] == "dead_letter"


def test_a_jobs_own_max_attempts_wins_over_the_per_kind_setting(jobs: Conn) -> None:
    queue, kind = unique("q"), unique("demo.flaky_")
    set_config(jobs, f"queue.retry.max_attempts.{kind}", 5)
    enqueue(jobs, kind, queue, max_attempts=1)

    answer = fail_transient(jobs, claim_one(jobs, queue))

    assert answer["status"] == "dead_letter"


def test_exhausted_transient_failure_dead_letters_the_full_job_row(jobs: Conn) -> None:
    queue = unique("q")
    job_id = enqueue(
        jobs,
        "demo.flaky",
        queue,
        payload={"n": 1},
        priority=3,
        idempotency_key="k-1",
        max_attempts=1,
    )
    job = claim_one(jobs, queue)

    answer = fail_transient(jobs, job, error="timeout talking to smtp")

    assert answer == {
        "ok": True,
        "job_id": job_id,
        "status": "dead_letter",
        "dead_letter_id": answer["dead_letter_id"],
    }
    dead = dead_letter_row(jobs, answer["dead_letter_id"])
    assert dead is not None
    assert (dead["job_id"], dead["queue"], dead["kind"], dead["payload"]) == (
        job_id,
        queue,
        "demo.flaky",
        {"n": 1},
    )
    assert (dead["reason"], dead["error"], dead["attempts"]) == (
        "max_attempts_exhausted",
        "timeout talking to smtp",
        1,
    )
    assert dead["job"]["id"] == job_id
    assert dead["job"]["priority"] == 3 and dead["job"]["idempotency_key"] == "k-1"
    assert dead["job"]["last_error"] == "timeout talking to smtp"
    assert job_row(jobs, job_id) is None


def test_fail_transient_still_ends_a_cancel_requested_job_cancelled(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, BACKOFF, True)
    job_id = enqueue(jobs, "demo.retry", queue)
    job = claim_one(jobs, queue)
    jobs.execute("SELECT fn_job_cancel(job_id => %s)", (job_id,))

    answer = fail_transient(jobs, job)

    assert answer == {"ok": True, "job_id": job_id, "status": "cancelled"}


# --------------------------------------------------------------------------- the lease reaper


def test_reaper_refuses_while_its_flag_is_off_and_changes_nothing(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, REAPER, False)
    job_id = enqueue(jobs, "demo.echo", queue)
    claim_one(jobs, queue)
    expire_leases(jobs, queue)
    before = job_row(jobs, job_id)

    assert reap(jobs) == {
        "refused": True,
        "reason": "lease_reaper_disabled",
        "flag": "queue.lease_reaper.enabled",
    }
    assert job_row(jobs, job_id) == before


def test_reaper_refuses_while_the_job_substrate_is_off(jobs: Conn) -> None:
    set_flag(jobs, SUBSTRATE, False)

    assert reap(jobs) == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }


def test_reaper_requeues_an_expired_job_keeping_its_attempt_and_clearing_the_lease(
    jobs: Conn,
) -> None:
    queue = unique("q")
    job_id = enqueue(jobs, "demo.echo", queue)
    claim_one(jobs, queue, worker="host-a:41")
    expire_leases(jobs, queue)

    answer = reap(jobs)

    assert answer == {"ok": True, "rescued": 1, "dead_lettered": 0, "cancelled": 0, "more": False}
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert (row["lease_token"], row["leased_by"], row["lease_expires_at"]) == (None, None, None)
    assert row["last_error"] == "lease expired (worker host-a:41)"
    assert delay_of(jobs, job_id) == 1  # backoff off: the fixed queue.retry.base_seconds


def test_reaper_leaves_a_live_lease_alone(jobs: Conn) -> None:
    queue = unique("q")
    job_id = enqueue(jobs, "demo.echo", queue)
    job = claim_one(jobs, queue)

    answer = reap(jobs)

    assert (answer["rescued"], answer["dead_lettered"]) == (0, 0)
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], str(row["lease_token"])) == ("in_progress", job["lease_token"])


def test_reaper_delays_the_rescued_job_by_the_backoff_when_enabled(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, BACKOFF, True)
    set_flag(jobs, "queue.retry.base_seconds", 3)
    set_flag(jobs, "queue.retry.jitter", 0)
    job_id = enqueue(jobs, "demo.echo", queue)
    for _ in range(2):  # the second attempt's lease expires
        claim_one(jobs, queue)
        expire_leases(jobs, queue)
        reap(jobs)
        delay = delay_of(jobs, job_id)
        make_ready(jobs, job_id)

    assert delay == 6  # 3 · 2^(2-1)


def test_a_reaped_workers_old_token_gets_lease_lost_on_complete_fail_and_extend(
    jobs: Conn,
) -> None:
    queue = unique("q")
    job_id = enqueue(jobs, "demo.echo", queue)
    stale = claim_one(jobs, queue, worker="w1")
    expire_leases(jobs, queue)
    reap(jobs)
    make_ready(jobs, job_id)
    fresh = claim_one(jobs, queue, worker="w2")
    params = {"job_id": job_id, "token": stale["lease_token"]}

    answers = [
        scalar(jobs, f"SELECT {function}(job_id => %(job_id)s, lease_token => %(token)s)", params)
        for function in (
            "fn_job_complete",
            "fn_job_fail_transient",
            "fn_job_fail_permanent",
            "fn_job_extend_lease",
        )
    ]

    assert answers == [{"refused": True, "reason": LEASE_LOST, "job_id": job_id}] * 4
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], str(row["lease_token"]), row["leased_by"]) == (
        "in_progress",
        fresh["lease_token"],
        "w2",
    )


def test_reaper_dead_letters_a_job_whose_attempts_are_used_up(jobs: Conn) -> None:
    queue = unique("q")
    job_id = enqueue(jobs, "demo.echo", queue, max_attempts=1)
    claim_one(jobs, queue, worker="w9")
    expire_leases(jobs, queue)

    answer = reap(jobs)

    assert (answer["rescued"], answer["dead_lettered"]) == (0, 1)
    assert job_row(jobs, job_id) is None
    with jobs.cursor(row_factory=dict_row) as cursor:
        dead = cursor.execute(
            "SELECT * FROM job_dead_letter WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert dead is not None
    assert (dead["reason"], dead["error"], dead["attempts"]) == (
        "lease_expired",
        "lease expired (worker w9)",
        1,
    )
    assert dead["job"]["id"] == job_id


def test_reaper_ends_a_cancel_requested_job_cancelled_instead_of_running_it_again(
    jobs: Conn,
) -> None:
    queue = unique("q")
    job_id = enqueue(jobs, "demo.echo", queue)
    claim_one(jobs, queue)
    jobs.execute("SELECT fn_job_cancel(job_id => %s)", (job_id,))
    expire_leases(jobs, queue)

    answer = reap(jobs)

    assert (answer["rescued"], answer["cancelled"]) == (0, 1)
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["lease_token"]) == ("cancelled", None)


def test_reaper_takes_at_most_batch_jobs_oldest_expiry_first_and_reports_more(
    jobs: Conn,
) -> None:
    queue = unique("q")
    ids = [enqueue(jobs, "demo.echo", queue) for _ in range(5)]
    claim(jobs, queue, batch=5)
    for age, job_id in enumerate(ids):  # the last job's lease expired first
        jobs.execute(
            "UPDATE job_queue SET lease_expires_at = now() - make_interval(secs => %s)"
            " WHERE id = %s",
            (10 + age, job_id),
        )

    def queued() -> set[int]:
        rows = jobs.execute(
            "SELECT id FROM job_queue WHERE queue = %s AND status = 'queued'", (queue,)
        ).fetchall()
        return {r[0] for r in rows}

    first = reap(jobs, batch=2)
    after_first = queued()
    second = reap(jobs, batch=2)
    third = reap(jobs, batch=2)

    assert (first["rescued"], first["more"]) == (2, True)
    assert after_first == {ids[4], ids[3]}
    assert (second["rescued"], second["more"]) == (2, True)
    assert (third["rescued"], third["more"]) == (1, False)
    assert queued() == set(ids)


def test_reaper_rejects_a_batch_out_of_range(jobs: Conn) -> None:
    invalid(jobs, "SELECT fn_job_lease_reaper(batch => 0)")
    invalid(jobs, "SELECT fn_job_lease_reaper(batch => 10001)")


def test_a_poison_job_that_kills_its_worker_is_dead_lettered_after_exactly_max_attempts_claims(
    jobs: Conn,
) -> None:
    queue, kind = unique("q"), unique("demo.poison_")
    set_config(jobs, f"queue.retry.max_attempts.{kind}", 3)
    set_flag(jobs, "queue.retry.base_seconds", 0)  # re-claimable at once
    job_id = enqueue(jobs, kind, queue)

    claims = 0
    for _ in range(10):  # far more rounds than attempts: the loop must end by itself
        if not claim(jobs, queue):
            break
        claims += 1  # ... and the worker is SIGKILLed: nobody completes or fails the job
        expire_leases(jobs, queue)
        reap(jobs)

    assert claims == 3
    assert job_row(jobs, job_id) is None
    reasons = jobs.execute(
        "SELECT reason, attempts FROM job_dead_letter WHERE job_id = %s", (job_id,)
    ).fetchall()
    assert reasons == [("lease_expired", 3)]


def test_two_reapers_at_once_rescue_each_expired_job_exactly_once(
    live: tuple[Connect, str],
) -> None:
    connect, queue = live
    setup = connect()
    setup.execute(
        "SELECT fn_job_enqueue(kind => 'demo.echo', queue => %s) FROM generate_series(1, 500)",
        (queue,),
    )
    assert len(claim(setup, queue, batch=500)) == 500
    expire_leases(setup, queue)

    reapers = [connect(), connect()]
    start = threading.Barrier(len(reapers))
    rescued: list[list[int]] = [[] for _ in reapers]
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            while True:
                answer = reap(reapers[index], batch=20)
                rescued[index].append(answer["rescued"] + answer["dead_lettered"])
                if not answer["more"] and answer["rescued"] == 0:
                    return
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(reapers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures, failures
    assert sum(map(sum, rescued)) == 500
    states = setup.execute(
        "SELECT status, attempts, count(*) FROM job_queue WHERE queue = %s GROUP BY 1, 2",
        (queue,),
    ).fetchall()
    assert states == [("queued", 1, 500)]


def test_a_reaper_steps_over_jobs_another_reaper_holds_instead_of_waiting(
    live: tuple[Connect, str],
) -> None:
    connect, queue = live
    setup = connect()
    setup.execute(
        "SELECT fn_job_enqueue(kind => 'demo.echo', queue => %s) FROM generate_series(1, 50)",
        (queue,),
    )
    claim(setup, queue, batch=50)
    expire_leases(setup, queue)
    first, second = connect(autocommit=False), connect()
    second.execute("SET statement_timeout = '5s'")  # waiting on a lock would fail, not hang

    held = reap(first, batch=20)  # its transaction stays open, holding those rows
    passing = reap(second)
    first.commit()
    rest = reap(second)

    assert held["rescued"] == 20
    assert 0 < passing["rescued"] <= 30
    assert held["rescued"] + passing["rescued"] + rest["rescued"] == 50
    assert rest["more"] is False
    assert (
        scalar(
            setup, "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'queued'", (queue,)
        )
        == 50
    )


# --------------------------------------------------------------------------- dead-letter replay


def test_replay_needs_a_dead_letter_id_or_a_filter(jobs: Conn) -> None:
    error = invalid(jobs, "SELECT fn_job_dead_letter_replay()")

    assert "dead_letter_id, kind or queue" in str(error)


def test_replay_refuses_an_id_together_with_a_filter(jobs: Conn) -> None:
    invalid(jobs, "SELECT fn_job_dead_letter_replay(dead_letter_id => 1, kind => 'demo.echo')")


def test_replay_of_an_unknown_dead_letter_is_refused_as_not_found(jobs: Conn) -> None:
    answer = replay(jobs, dead_letter_id=-1)

    assert answer == {"refused": True, "reason": "not_found", "dead_letter_id": -1}


def test_replay_refuses_while_the_job_substrate_is_off(jobs: Conn) -> None:
    dead_letter_id = dead_letter_job(jobs, "demo.echo", unique("q"))
    set_flag(jobs, SUBSTRATE, False)

    assert replay(jobs, dead_letter_id=dead_letter_id) == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }
    assert dead_letter_row(jobs, dead_letter_id)["resolved_at"] is None  # type: ignore[index]


def test_replay_by_id_enqueues_a_copy_with_zero_attempts_and_resolves_the_dead_letter(
    jobs: Conn,
) -> None:
    queue = unique("q")
    enqueue(
        jobs,
        "demo.mail",
        queue,
        payload={"to": 7},
        priority=5,
        idempotency_key="mail-7",
        max_attempts=2,
    )
    dead_letter_id = fail_permanent(jobs, claim_one(jobs, queue))

    answer = replay(jobs, dead_letter_id=dead_letter_id, replayed_by="alice")

    assert answer["ok"] is True and answer["skipped"] == []
    [replayed] = answer["replayed"]
    assert replayed["dead_letter_id"] == dead_letter_id
    row = job_row(jobs, replayed["job_id"])
    assert row is not None
    assert (
        row["queue"],
        row["kind"],
        row["payload"],
        row["priority"],
        row["max_attempts"],
        row["idempotency_key"],
    ) == (queue, "demo.mail", {"to": 7}, 5, 2, "mail-7")
    assert (row["status"], row["attempts"], row["lease_token"]) == ("queued", 0, None)
    dead = dead_letter_row(jobs, dead_letter_id)
    assert dead is not None
    assert dead["resolved_at"] == scalar(jobs, "SELECT now()")
    assert (dead["resolved_by"], dead["replayed_job_id"]) == ("alice", replayed["job_id"])
    assert claim_one(jobs, queue)["job_id"] == replayed["job_id"]  # runnable again


def test_replay_records_the_session_user_when_nobody_is_named(jobs: Conn) -> None:
    dead_letter_id = dead_letter_job(jobs, "demo.echo", unique("q"))
    # An operator session other than the functions' owner (inside the SECURITY DEFINER
    # function current_user is the owner, session_user the operator).
    jobs.execute("SET LOCAL SESSION AUTHORIZATION conveyor_admin")

    replay(jobs, dead_letter_id=dead_letter_id)

    dead = dead_letter_row(jobs, dead_letter_id)
    assert dead is not None
    assert dead["resolved_by"] == "conveyor_admin"


def test_replay_by_kind_replays_only_that_kinds_open_dead_letters(jobs: Conn) -> None:
    queue, kind, other = unique("q"), unique("demo.a_"), unique("demo.b_")
    wanted = [dead_letter_job(jobs, kind, queue) for _ in range(3)]
    other_kind = dead_letter_job(jobs, other, queue)
    already = dead_letter_job(jobs, kind, queue)
    replay(jobs, dead_letter_id=already)

    answer = replay(jobs, kind=kind)

    assert [r["dead_letter_id"] for r in answer["replayed"]] == wanted
    assert answer["skipped"] == []
    assert dead_letter_row(jobs, other_kind)["resolved_at"] is None  # type: ignore[index]
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE kind = %s", (kind,)) == 4


def test_replay_by_queue_takes_at_most_max_rows_oldest_first(jobs: Conn) -> None:
    queue = unique("q")
    ids = [dead_letter_job(jobs, "demo.echo", queue) for _ in range(3)]
    jobs.execute(
        "UPDATE job_dead_letter SET failed_at = now() - interval '1 hour' WHERE id = %s",
        (ids[2],),
    )

    answer = replay(jobs, queue=queue, max_rows=2)

    assert [r["dead_letter_id"] for r in answer["replayed"]] == [ids[2], ids[0]]
    assert dead_letter_row(jobs, ids[1])["resolved_at"] is None  # type: ignore[index]


def test_replaying_a_dead_letter_twice_creates_one_job(jobs: Conn) -> None:
    kind = unique("demo.once_")
    dead_letter_id = dead_letter_job(jobs, kind, unique("q"))
    first = replay(jobs, dead_letter_id=dead_letter_id)

    second = replay(jobs, dead_letter_id=dead_letter_id)

    assert second["replayed"] == []
    [skipped] = second["skipped"]
    assert (skipped["dead_letter_id"], skipped["reason"], skipped["replayed_job_id"]) == (
        dead_letter_id,
        "already_resolved",
        first["replayed"][0]["job_id"],
    )
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE kind = %s", (kind,)) == 1


def test_two_replays_of_one_dead_letter_at_once_create_one_job(
    live: tuple[Connect, str],
) -> None:
    connect, queue = live
    setup = connect()
    dead_letter_id = dead_letter_job(setup, "demo.echo", queue)
    first, second = connect(autocommit=False), connect()
    second_pid = second.info.backend_pid
    answers: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    held = replay(first, dead_letter_id=dead_letter_id)  # uncommitted: holds the row lock

    def replay_again() -> None:
        try:
            answers.append(replay(second, dead_letter_id=dead_letter_id))
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=replay_again)
    thread.start()
    wait_until(
        lambda: scalar(
            setup,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (second_pid,),
        ),
        timeout=10,
    )
    first.commit()
    thread.join(timeout=10)

    assert not failures, failures
    assert len(held["replayed"]) == 1
    assert answers[0]["replayed"] == []
    assert answers[0]["skipped"][0]["reason"] == "already_resolved"
    assert scalar(setup, "SELECT count(*) FROM job_queue WHERE queue = %s", (queue,)) == 1


def test_replay_skips_a_dead_letter_whose_key_a_live_job_holds_and_replays_the_rest(
    jobs: Conn,
) -> None:
    queue, kind, key = unique("q"), unique("demo.keyed_"), unique("key-")
    blocked = dead_letter_job(jobs, kind, queue, idempotency_key=key)
    free = dead_letter_job(jobs, kind, queue)
    keyed = dead_letter_job(jobs, kind, queue, idempotency_key=unique("other-"))
    twin = enqueue(jobs, kind, unique("q"), idempotency_key=key)  # live again meanwhile

    answer = replay(jobs, kind=kind)

    assert [r["dead_letter_id"] for r in answer["replayed"]] == [free, keyed]
    assert answer["skipped"] == [
        {
            "dead_letter_id": blocked,
            "reason": "idempotency_key_live",
            "idempotency_key": key,
            "job_id": twin,
        },
    ]
    assert dead_letter_row(jobs, blocked)["resolved_at"] is None  # type: ignore[index]
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE idempotency_key = %s", (key,)) == 1


# --------------------------------------------------------------------------- retention


def finished_job(conn: Conn, queue: str, status: str, age: str) -> int:
    """A job that succeeded or was cancelled *age* ago."""
    job_id = enqueue(conn, "demo.echo", queue)
    if status == "succeeded":
        job = claim_one(conn, queue)
        conn.execute(
            "SELECT fn_job_complete(job_id => %s, lease_token => %s)", (job_id, job["lease_token"])
        )
    else:
        conn.execute("SELECT fn_job_cancel(job_id => %s)", (job_id,))
    conn.execute(
        "UPDATE job_queue SET finished_at = now() - %s::interval WHERE id = %s", (age, job_id)
    )
    assert job_row(conn, job_id)["status"] == status  # type: ignore[index]
    return job_id


def resolved_dead_letter(conn: Conn, age: str | None) -> int:
    """A dead letter resolved *age* ago (None: still open, failed long ago). Each in a queue of
    its own, so the job a replay puts back is never claimed by the next one's setup."""
    dead_letter_id = dead_letter_job(conn, "demo.echo", unique("q"))
    if age is None:
        conn.execute(
            "UPDATE job_dead_letter SET failed_at = now() - interval '1 year' WHERE id = %s",
            (dead_letter_id,),
        )
    else:
        replay(conn, dead_letter_id=dead_letter_id)
        conn.execute(
            "UPDATE job_dead_letter SET resolved_at = now() - %s::interval WHERE id = %s",
            (age, dead_letter_id),
        )
    return dead_letter_id


def test_prune_deletes_only_finished_rows_older_than_their_retention(jobs: Conn) -> None:
    queue = unique("q")
    old_succeeded = finished_job(jobs, queue, "succeeded", "8 days")
    new_succeeded = finished_job(jobs, queue, "succeeded", "6 days")
    old_cancelled = finished_job(jobs, queue, "cancelled", "8 days")
    new_cancelled = finished_job(jobs, queue, "cancelled", "6 days")
    waiting = enqueue(jobs, "demo.echo", unique("q"))
    jobs.execute(
        "UPDATE job_queue SET created_at = now() - interval '1 year' WHERE id = %s", (waiting,)
    )
    old_resolved = resolved_dead_letter(jobs, "31 days")
    new_resolved = resolved_dead_letter(jobs, "29 days")
    still_open = resolved_dead_letter(jobs, None)
    replayed_jobs = jobs.execute(
        "SELECT replayed_job_id FROM job_dead_letter WHERE id = ANY(%s)",
        ([old_resolved, new_resolved],),
    ).fetchall()

    answer = prune(jobs)

    assert answer == {
        "ok": True,
        "deleted": {"succeeded": 1, "cancelled": 1, "dead_letters": 1},
        "more": False,
    }
    assert job_row(jobs, old_succeeded) is None and job_row(jobs, old_cancelled) is None
    assert dead_letter_row(jobs, old_resolved) is None
    for job_id in (new_succeeded, new_cancelled, waiting, *(r[0] for r in replayed_jobs)):
        assert job_row(jobs, job_id) is not None
    for dead_letter_id in (new_resolved, still_open):
        assert dead_letter_row(jobs, dead_letter_id) is not None


def test_prune_follows_each_retention_setting(jobs: Conn) -> None:
    queue = unique("q")
    set_flag(jobs, "queue.retention.cancelled_seconds", 3600)
    succeeded = finished_job(jobs, queue, "succeeded", "2 hours")
    cancelled = finished_job(jobs, queue, "cancelled", "2 hours")

    prune(jobs)

    assert job_row(jobs, succeeded) is not None
    assert job_row(jobs, cancelled) is None


def test_prune_deletes_in_batches_and_reports_more_until_done(jobs: Conn) -> None:
    queue = unique("q")
    ids = [finished_job(jobs, queue, "succeeded", "30 days") for _ in range(5)]

    rounds = [prune(jobs, batch=2) for _ in range(3)]

    assert [(r["deleted"]["succeeded"], r["more"]) for r in rounds] == [
        (2, True),
        (2, True),
        (1, False),
    ]
    assert all(job_row(jobs, job_id) is None for job_id in ids)


def test_prune_refuses_while_the_job_substrate_is_off(jobs: Conn) -> None:
    set_flag(jobs, SUBSTRATE, False)

    assert prune(jobs) == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }


def test_prune_rejects_a_batch_out_of_range(jobs: Conn) -> None:
    invalid(jobs, "SELECT fn_job_prune(batch => 0)")


# --------------------------------------------------------------------------- privileges, catalog


OPERATOR_FUNCTIONS = (
    "fn_job_lease_reaper(integer)",
    "fn_job_prune(integer)",
    "fn_job_dead_letter_replay(bigint, text, text, integer, text)",
)


@pytest.mark.parametrize("signature", OPERATOR_FUNCTIONS)
def test_operator_functions_are_executable_by_conveyor_admin_only(db: Conn, signature: str) -> None:
    def may(role: str) -> bool:
        return bool(
            scalar(
                db,
                "SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                (role, f"conveyor.{signature}"),
            )
        )

    public = scalar(
        db,
        "SELECT EXISTS (SELECT 1 FROM aclexplode((SELECT proacl FROM pg_proc"
        " WHERE oid = %s::regprocedure)) AS a WHERE a.grantee = 0)",
        (f"conveyor.{signature}",),
    )
    assert (may("conveyor_admin"), may("conveyor_worker"), may("conveyor_reader"), public) == (
        True,
        False,
        False,
        False,
    )


def test_a_worker_cannot_run_the_reaper(jobs: Conn) -> None:
    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SET LOCAL ROLE conveyor_worker")
        jobs.execute("SELECT conveyor.fn_job_lease_reaper()")


def test_fail_transient_keeps_its_phase_1_grants(db: Conn) -> None:
    signature = "conveyor.fn_job_fail_transient(bigint, uuid, text, numeric)"

    grants = {
        role: scalar(db, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, signature))
        for role in ("conveyor_worker", "conveyor_admin", "conveyor_reader")
    }

    assert grants == {"conveyor_worker": True, "conveyor_admin": True, "conveyor_reader": False}


def test_up_down_up_restores_phase_1_exactly_and_reapplies_the_same_catalog(
    empty_dsn: str,
) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        apply_phase(conn, 0)
        apply_phase(conn, 1)
        before = fingerprint.catalog_fingerprint(conn)
        apply_phase(conn, 2)
        applied = fingerprint.catalog_fingerprint(conn)

        runner.rollback(conn, 2, "tests")
        after_down = fingerprint.catalog_fingerprint(conn)
        again = apply_phase(conn, 2)

        assert fingerprint.describe_difference(before, after_down) == []
        assert fingerprint.describe_difference(applied, fingerprint.catalog_fingerprint(conn)) == []
        assert again.gate is not None and again.gate.passed, again.gate


def test_gate_passes_and_leaves_no_trace_beside_expired_leases_of_other_queues(
    live: tuple[Connect, str], dsn: str
) -> None:
    connect, queue = live
    setup = connect()
    setup.execute(
        "SELECT fn_job_enqueue(kind => 'demo.echo', queue => %s) FROM generate_series(1, 3)",
        (queue,),
    )
    claim(setup, queue, batch=3)
    expire_leases(setup, queue)
    set_flag(setup, SUBSTRATE, False)
    set_flag(setup, REAPER, False)  # the gate must pass with the flags at their defaults
    before = setup.execute("SELECT * FROM job_queue ORDER BY id").fetchall()
    dead_before = setup.execute("SELECT * FROM job_dead_letter ORDER BY id").fetchall()

    with psycopg.connect(dsn, autocommit=True) as conn:
        result = runner.verify(conn, 2, "tests")

    assert result.passed, result.failures
    assert len(result.items) == 3
    assert setup.execute("SELECT * FROM job_queue ORDER BY id").fetchall() == before
    assert setup.execute("SELECT * FROM job_dead_letter ORDER BY id").fetchall() == dead_before
