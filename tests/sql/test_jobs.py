"""Phase 1, the job substrate: every fn_job_* function, its refusals and validation errors, lease
fencing, idempotency, the dead letter queue and the views. Plain SQL on real PostgreSQL; tests of
SKIP LOCKED and concurrent enqueue use two connections and committed data (unique queues).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from helpers import scalar, set_flag, unique, wait_until

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]

FLAG = "queue.job_substrate.enabled"
DISABLED = {
    "refused": True,
    "reason": "job_substrate_disabled",
    "flag": "queue.job_substrate.enabled",
}

# The arguments fn_job_enqueue takes; helpers below build calls from these names only.
ENQUEUE_ARGS = ("kind", "payload", "queue", "priority", "run_at", "idempotency_key", "max_attempts")
CLAIM_ARGS = ("worker", "queues", "kinds", "batch", "lease_seconds")


# --------------------------------------------------------------------------- helpers


def _named_call(function: str, allowed: tuple[str, ...], arguments: dict[str, Any]) -> str:
    unknown = set(arguments) - set(allowed)
    assert not unknown, f"not an argument of {function}: {unknown}"
    names = [name for name in allowed if name in arguments]
    return f"SELECT {function}(" + ", ".join(f"{name} => %({name})s" for name in names) + ")"


def _adapt(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k == "payload" and v is not None else v for k, v in arguments.items()}


def enqueue(conn: Conn, kind: str = "demo.echo", **arguments: Any) -> dict[str, Any]:
    """fn_job_enqueue's answer."""
    arguments["kind"] = kind
    return dict(
        scalar(conn, _named_call("fn_job_enqueue", ENQUEUE_ARGS, arguments), _adapt(arguments))
    )


def enqueue_id(conn: Conn, kind: str = "demo.echo", **arguments: Any) -> int:
    answer = enqueue(conn, kind, **arguments)
    assert answer.get("ok"), answer
    return int(answer["job_id"])


def enqueue_many(conn: Conn, items: list[Any]) -> dict[str, Any]:
    """fn_job_enqueue_many's answer."""
    return dict(scalar(conn, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(items),)))


def claim(conn: Conn, worker: str = "w1", **arguments: Any) -> list[dict[str, Any]]:
    """The jobs fn_job_claim leased (asserting it answered ok)."""
    arguments["worker"] = worker
    answer = scalar(conn, _named_call("fn_job_claim", CLAIM_ARGS, arguments), arguments)
    assert answer.get("ok"), answer
    return list(answer["jobs"])


def claim_one(conn: Conn, worker: str = "w1", **arguments: Any) -> dict[str, Any]:
    jobs = claim(conn, worker, **arguments)
    assert len(jobs) == 1, jobs
    return jobs[0]


def job_row(conn: Conn, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM job_queue WHERE id = %s", (job_id,)).fetchone()


def dead_letter_row(conn: Conn, dead_letter_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT * FROM job_dead_letter WHERE id = %s", (dead_letter_id,)
        ).fetchone()


def counts(conn: Conn) -> tuple[int, int]:
    """Rows in job_queue and job_dead_letter."""
    return (
        int(scalar(conn, "SELECT count(*) FROM job_queue")),
        int(scalar(conn, "SELECT count(*) FROM job_dead_letter")),
    )


def call(conn: Conn, query: str, params: Any = None) -> Any:
    return scalar(conn, query, params)


def invalid(conn: Conn, query: str, params: Any = None) -> psycopg.Error:
    """Run *query* expecting SQLSTATE 22023 (in a savepoint); return the error."""
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        conn.execute(query, params)
    assert caught.value.sqlstate == "22023"
    assert caught.value.diag.message_hint, "an invalid argument error must carry a HINT"
    return caught.value


def reclaim_with_new_token(conn: Conn, job: dict[str, Any]) -> dict[str, Any]:
    """Make *job*'s token stale: give the job back and claim it again (a new lease)."""
    released = call(
        conn,
        "SELECT fn_job_release(job_id => %s, lease_token => %s)",
        (job["job_id"], job["lease_token"]),
    )
    assert released["status"] == "queued"
    fresh = claim_one(conn, worker="w2", queues=[job["queue"]])
    assert fresh["job_id"] == job["job_id"] and fresh["lease_token"] != job["lease_token"]
    return fresh


def now(conn: Conn, offset: str = "0 seconds") -> datetime:
    return scalar(conn, "SELECT now() + %s::interval", (offset,))  # type: ignore[no-any-return]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def live(connect: Connect) -> Iterator[Connect]:
    """The module database with the substrate enabled (committed); disabled again afterwards."""
    admin = connect()
    set_flag(admin, FLAG, True)
    yield connect
    set_flag(admin, FLAG, False)


# --------------------------------------------------------------------------- the gate


def leased_call(function: str, extra: str = "") -> str:
    """A call of a worker function on job %(job_id)s with lease %(token)s."""
    return f"SELECT {function}(job_id => %(job_id)s, lease_token => %(token)s{extra})"


GATED_CALLS = {
    "fn_job_enqueue": "SELECT fn_job_enqueue(kind => 'demo.echo')",
    "fn_job_enqueue_many": 'SELECT fn_job_enqueue_many(jobs => \'[{"kind": "demo.echo"}]\')',
    "fn_job_claim": "SELECT fn_job_claim(worker => 'w1', queues => ARRAY[%(queue)s])",
    "fn_job_complete": leased_call("fn_job_complete"),
    "fn_job_complete_many": (
        "SELECT fn_job_complete_many(job_ids => ARRAY[%(job_id)s]::bigint[],"
        " lease_tokens => ARRAY[%(token)s]::uuid[])"
    ),
    "fn_job_fail_transient": leased_call("fn_job_fail_transient"),
    "fn_job_fail_permanent": leased_call("fn_job_fail_permanent"),
    "fn_job_extend_lease": leased_call("fn_job_extend_lease"),
    "fn_job_snooze": leased_call("fn_job_snooze", ", seconds => 5"),
    "fn_job_release": leased_call("fn_job_release"),
    "fn_job_cancel": "SELECT fn_job_cancel(job_id => %(job_id)s)",
    "fn_job_cancel_ack": leased_call("fn_job_cancel_ack"),
}


@pytest.mark.parametrize("function", sorted(GATED_CALLS))
def test_every_function_refuses_while_the_substrate_is_disabled_and_changes_nothing(
    db: Conn, function: str
) -> None:
    set_flag(db, FLAG, True)
    queue = unique("gate-")
    enqueue_id(db, queue=queue)  # a queued job the claim would otherwise take
    running = claim_one(db, queues=[queue])
    call(db, "SELECT fn_job_cancel(job_id => %s)", (running["job_id"],))  # so cancel_ack could act
    enqueue_id(db, queue=queue)
    set_flag(db, FLAG, False)
    before_rows = db.execute("SELECT * FROM job_queue ORDER BY id").fetchall()
    before_counts = counts(db)

    answer = call(
        db,
        GATED_CALLS[function],
        {"queue": queue, "job_id": running["job_id"], "token": running["lease_token"]},
    )

    assert answer == DISABLED
    assert db.execute("SELECT * FROM job_queue ORDER BY id").fetchall() == before_rows
    assert counts(db) == before_counts


# --------------------------------------------------------------------------- enqueue


def test_enqueue_creates_a_queued_job_with_defaults(jobs: Conn) -> None:
    answer = enqueue(jobs, "email.send", payload={"to": "a@example.com"})

    assert answer["ok"] is True and answer["created"] is True
    row = job_row(jobs, answer["job_id"])
    assert row is not None
    assert row["status"] == "queued"
    assert row["queue"] == "default"
    assert row["kind"] == "email.send"
    assert row["payload"] == {"to": "a@example.com"}
    assert row["priority"] == 0
    assert row["attempts"] == 0
    assert row["max_attempts"] is None
    assert row["run_at"] == now(jobs)
    assert row["lease_token"] is None


def test_enqueue_treats_null_arguments_as_their_defaults(jobs: Conn) -> None:
    job_id = enqueue_id(
        jobs,
        payload=None,
        queue=None,
        priority=None,
        run_at=None,
        idempotency_key=None,
        max_attempts=None,
    )

    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["payload"], row["queue"], row["priority"], row["run_at"]) == (
        {},
        "default",
        0,
        now(jobs),
    )


def test_enqueue_stores_the_given_options(jobs: Conn) -> None:
    run_at = now(jobs, "1 hour")
    job_id = enqueue_id(
        jobs,
        "report.build",
        queue="reports",
        priority=-7,
        run_at=run_at,
        idempotency_key="report-1",
        max_attempts=3,
    )

    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["queue"], row["priority"], row["run_at"], row["idempotency_key"]) == (
        "reports",
        -7,
        run_at,
        "report-1",
    )
    assert row["max_attempts"] == 3


def test_enqueue_rolls_back_with_the_callers_transaction(jobs: Conn) -> None:
    before = counts(jobs)
    with pytest.raises(RuntimeError), jobs.transaction():
        enqueue_id(jobs, "demo.echo")
        raise RuntimeError("the caller's work failed")

    assert counts(jobs) == before


def test_enqueue_with_a_live_idempotency_key_returns_the_existing_job(jobs: Conn) -> None:
    first = enqueue(jobs, "demo.echo", payload={"n": 1}, idempotency_key="order-42")

    second = enqueue(jobs, "demo.echo", payload={"n": 2}, idempotency_key="order-42")

    assert second == {"ok": True, "job_id": first["job_id"], "created": False}
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE idempotency_key = 'order-42'") == 1
    row = job_row(jobs, first["job_id"])
    assert row is not None and row["payload"] == {"n": 1}


@pytest.mark.parametrize("state", ["waiting", "queued", "in_progress", "retry_scheduled"])
def test_an_idempotency_key_holds_in_every_live_state(jobs: Conn, state: str) -> None:
    queue = unique("idem-")
    job_id = enqueue_id(jobs, queue=queue, idempotency_key="k-live")
    if state == "waiting":  # a workflow step (phase 6); no phase 1 function creates one
        jobs.execute("UPDATE job_queue SET status = 'waiting' WHERE id = %s", (job_id,))
    elif state == "in_progress":
        claim_one(jobs, queues=[queue])
    elif state == "retry_scheduled":
        job = claim_one(jobs, queues=[queue])
        call(
            jobs,
            "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s,"
            " retry_in_seconds => 600)",
            (job_id, job["lease_token"]),
        )

    again = enqueue(jobs, queue=queue, idempotency_key="k-live")

    assert again == {"ok": True, "job_id": job_id, "created": False}


@pytest.mark.parametrize("ending", ["succeeded", "cancelled", "dead_letter"])
def test_an_idempotency_key_is_released_when_its_job_ends(jobs: Conn, ending: str) -> None:
    queue = unique("idem-")
    job_id = enqueue_id(jobs, queue=queue, idempotency_key="k-end")
    if ending == "cancelled":
        call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))
    else:
        job = claim_one(jobs, queues=[queue])
        function = "fn_job_complete" if ending == "succeeded" else "fn_job_fail_permanent"
        call(
            jobs,
            f"SELECT {function}(job_id => %s, lease_token => %s)",
            (job_id, job["lease_token"]),
        )

    again = enqueue(jobs, queue=queue, idempotency_key="k-end")

    assert again["created"] is True and again["job_id"] != job_id


def test_concurrent_enqueue_with_the_same_key_creates_one_job(live: Connect) -> None:
    first, second, observer = live(autocommit=False), live(), live()
    queue, key = unique("race-"), unique("key-")
    second.execute("SET statement_timeout = '20s'")
    pending = enqueue(first, queue=queue, idempotency_key=key)  # not committed yet
    second_pid = scalar(second, "SELECT pg_backend_pid()")
    answers: dict[str, Any] = {}

    def enqueue_second() -> None:
        answers["second"] = enqueue(second, queue=queue, idempotency_key=key)

    thread = threading.Thread(target=enqueue_second)
    thread.start()
    wait_until(
        lambda: scalar(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (second_pid,),
        )
    )
    first.commit()
    thread.join(timeout=20)

    assert answers["second"] == {"ok": True, "job_id": pending["job_id"], "created": False}
    assert (
        scalar(observer, "SELECT count(*) FROM job_queue WHERE idempotency_key = %s", (key,)) == 1
    )


def test_enqueue_many_waits_for_a_concurrent_holder_of_a_key_and_reports_its_job(
    live: Connect,
) -> None:
    first, second, observer = live(autocommit=False), live(), live()
    queue, key = unique("race-"), unique("key-")
    second.execute("SET statement_timeout = '20s'")
    pending = enqueue(first, queue=queue, idempotency_key=key)  # not committed yet
    second_pid = scalar(second, "SELECT pg_backend_pid()")
    answers: dict[str, Any] = {}

    def enqueue_second() -> None:
        answers["second"] = enqueue_many(
            second, [{"kind": "demo.echo", "queue": queue, "idempotency_key": key}]
        )

    thread = threading.Thread(target=enqueue_second)
    thread.start()
    wait_until(
        lambda: scalar(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (second_pid,),
        )
    )
    first.commit()
    thread.join(timeout=20)

    assert answers["second"] == {"ok": True, "job_ids": [pending["job_id"]], "created": 0}
    assert (
        scalar(observer, "SELECT count(*) FROM job_queue WHERE idempotency_key = %s", (key,)) == 1
    )


# --------------------------------------------------------------------------- enqueue validation

KIND_OVER_128_BYTES = "é" * 65  # 65 characters, 130 bytes

INVALID_ENQUEUE = [
    pytest.param({"kind": None}, "kind", "required", id="kind-missing"),
    pytest.param({"kind": ""}, "kind", "required", id="kind-empty"),
    pytest.param(
        {"kind": KIND_OVER_128_BYTES}, "kind", "130 bytes", id="kind-multibyte-over-128-bytes"
    ),
    pytest.param({"kind": "k" * 129}, "kind", "128 bytes", id="kind-too-long"),
    pytest.param({"kind": "email send"}, "kind", "does not match", id="kind-pattern"),
    pytest.param({"kind": "_hidden"}, "kind", "does not match", id="kind-leading-underscore"),
    pytest.param({"queue": "q" * 64}, "queue", "63 bytes", id="queue-too-long"),
    pytest.param({"queue": "é" * 32}, "queue", "64 bytes", id="queue-multibyte-over-63-bytes"),
    pytest.param({"queue": "Emails"}, "queue", "does not match", id="queue-uppercase"),
    pytest.param({"queue": ""}, "queue", "does not match", id="queue-empty"),
    pytest.param({"payload": [1, 2]}, "payload", "JSON object", id="payload-array"),
    pytest.param({"payload": "text"}, "payload", "JSON object", id="payload-string"),
    pytest.param({"payload": {"blob": "x" * 300_000}}, "payload", "262144", id="payload-too-big"),
    pytest.param({"priority": 1001}, "priority", "-1000 to 1000", id="priority-too-high"),
    pytest.param({"priority": -1001}, "priority", "-1000 to 1000", id="priority-too-low"),
    pytest.param({"max_attempts": 0}, "max_attempts", "1 to 1000", id="max-attempts-zero"),
    pytest.param({"max_attempts": 1001}, "max_attempts", "1 to 1000", id="max-attempts-too-high"),
    pytest.param({"idempotency_key": ""}, "idempotency_key", "empty", id="key-empty"),
    pytest.param({"idempotency_key": "k" * 256}, "idempotency_key", "255 bytes", id="key-too-long"),
]


def nested(depth: int) -> dict[str, Any]:
    """An object whose deepest value sits *depth* levels below the top."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"d": value}
    return {"d": value}


@pytest.mark.parametrize(("arguments", "argument", "limit"), INVALID_ENQUEUE)
def test_enqueue_rejects_an_invalid_argument_by_name_and_writes_nothing(
    jobs: Conn, arguments: dict[str, Any], argument: str, limit: str
) -> None:
    arguments = {"kind": "demo.echo", **arguments}
    before = counts(jobs)

    error = invalid(jobs, _named_call("fn_job_enqueue", ENQUEUE_ARGS, arguments), _adapt(arguments))

    message = error.diag.message_primary or ""
    assert message.startswith(f"fn_job_enqueue: {argument} ")
    assert limit in message
    assert counts(jobs) == before


def test_enqueue_rejects_a_run_at_more_than_ten_years_ahead(jobs: Conn) -> None:
    before = counts(jobs)

    error = invalid(
        jobs,
        "SELECT fn_job_enqueue(kind => 'demo.echo', run_at => now() + interval '10 years 1 day')",
    )

    assert (error.diag.message_primary or "").startswith("fn_job_enqueue: run_at ")
    assert "10 years" in (error.diag.message_primary or "")
    assert counts(jobs) == before


def test_enqueue_accepts_a_multibyte_payload_and_a_kind_of_exactly_128_bytes(jobs: Conn) -> None:
    job_id = enqueue_id(jobs, "k" * 128, payload={"name": "Zoë 🚚"})

    row = job_row(jobs, job_id)
    assert row is not None and row["payload"] == {"name": "Zoë 🚚"}


def test_enqueue_limits_payload_nesting_to_queue_payload_max_depth(jobs: Conn) -> None:
    assert enqueue(jobs, payload=nested(32))["ok"] is True
    before = counts(jobs)

    error = invalid(
        jobs, "SELECT fn_job_enqueue(kind => 'demo.echo', payload => %s)", (Jsonb(nested(33)),)
    )

    assert (error.diag.message_primary or "").startswith("fn_job_enqueue: payload ")
    assert "32" in (error.diag.message_primary or "")
    assert counts(jobs) == before


def test_enqueue_counts_nesting_inside_arrays_too(jobs: Conn) -> None:
    set_flag(jobs, "queue.payload.max_depth", 3)

    assert enqueue(jobs, payload={"a": [[1]]})["ok"] is True
    invalid(
        jobs, "SELECT fn_job_enqueue(kind => 'demo.echo', payload => %s)", (Jsonb({"a": [[[1]]]}),)
    )


def test_enqueue_reads_the_payload_size_limit_from_config(jobs: Conn) -> None:
    set_flag(jobs, "queue.payload.max_bytes", 64)

    error = invalid(
        jobs,
        "SELECT fn_job_enqueue(kind => 'demo.echo', payload => %s)",
        (Jsonb({"x": "y" * 100}),),
    )

    assert "the limit is 64 bytes" in (error.diag.message_primary or "")


def test_enqueue_never_echoes_the_payload_in_an_error(jobs: Conn) -> None:
    error = invalid(
        jobs,
        "SELECT fn_job_enqueue(kind => 'demo.echo', payload => %s)",
        (Jsonb({"secret": "hunter2" * 50_000}),),
    )

    assert "hunter2" not in str(error)


# --------------------------------------------------------------------------- enqueue_many


def test_enqueue_many_inserts_every_job_and_answers_ids_in_input_order(jobs: Conn) -> None:
    queue = unique("many-")
    answer = enqueue_many(
        jobs,
        [
            {"kind": "a.one", "payload": {"n": 1}, "queue": queue},
            {"kind": "a.two", "queue": queue, "priority": 5, "max_attempts": 2},
            {"kind": "a.three", "queue": queue, "run_at": "2001-02-03T04:05:06Z"},
        ],
    )

    assert answer["ok"] is True and answer["created"] == 3
    ids = answer["job_ids"]
    assert ids == sorted(ids)  # ids ascend in input order: FIFO within the batch
    rows = [job_row(jobs, job_id) for job_id in ids]
    assert [(r["kind"], r["payload"], r["priority"], r["max_attempts"]) for r in rows if r] == [
        ("a.one", {"n": 1}, 0, None),
        ("a.two", {}, 5, 2),
        ("a.three", {}, 0, None),
    ]
    assert rows[2] is not None and rows[2]["run_at"].isoformat() == "2001-02-03T04:05:06+00:00"


def test_enqueue_many_with_an_empty_array_does_nothing(jobs: Conn) -> None:
    assert enqueue_many(jobs, []) == {"ok": True, "job_ids": [], "created": 0}


def test_enqueue_many_honours_live_and_repeated_idempotency_keys(jobs: Conn) -> None:
    existing = enqueue_id(jobs, idempotency_key="k-existing")

    answer = enqueue_many(
        jobs,
        [
            {"kind": "demo.echo", "idempotency_key": "k-new"},
            {"kind": "demo.echo", "idempotency_key": "k-existing"},
            {"kind": "demo.echo"},
            {"kind": "demo.echo", "idempotency_key": "k-new", "payload": {"ignored": True}},
        ],
    )

    new_id, existing_id, keyless_id, repeat_id = answer["job_ids"]
    assert existing_id == existing
    assert repeat_id == new_id
    assert len({new_id, keyless_id, existing}) == 3
    assert answer["created"] == 2
    assert scalar(jobs, "SELECT count(*) FROM job_queue WHERE idempotency_key = 'k-new'") == 1


INVALID_MANY = [
    pytest.param([{"kind": "ok"}, "not an object"], "jobs[1] ", "JSON object", id="not-an-object"),
    pytest.param([{"kind": "ok"}, {"kind": "ok", "prio": 1}], "jobs[1] ", "prio", id="unknown-key"),
    pytest.param([{"payload": {}}], "jobs[0].kind ", "required", id="kind-missing"),
    pytest.param([{"kind": 7}], "jobs[0].kind ", "string", id="kind-not-a-string"),
    pytest.param(
        [{"kind": "ok"}, {"kind": "ok", "priority": "high"}],
        "jobs[1].priority ",
        "number",
        id="priority-not-a-number",
    ),
    pytest.param(
        [{"kind": "ok", "priority": 1.5}],
        "jobs[0].priority ",
        "whole number",
        id="priority-fraction",
    ),
    pytest.param(
        [{"kind": "ok"}, {"kind": "ok"}, {"kind": "ok", "run_at": "soon"}],
        "jobs[2].run_at ",
        "not a timestamp",
        id="run-at-unparseable",
    ),
    pytest.param(
        [{"kind": "ok"}, {"kind": "ok", "queue": "Bad Queue"}],
        "jobs[1].queue ",
        "does not match",
        id="queue-pattern",
    ),
    pytest.param(
        [{"kind": "ok", "payload": [1]}],
        "jobs[0].payload ",
        "JSON object",
        id="payload-not-an-object",
    ),
    pytest.param(
        [{"kind": "ok"}, {"kind": KIND_OVER_128_BYTES}],
        "jobs[1].kind ",
        "130 bytes",
        id="kind-over-128-bytes",
    ),
]


@pytest.mark.parametrize(("items", "where", "problem"), INVALID_MANY)
def test_enqueue_many_names_the_bad_element_and_writes_nothing(
    jobs: Conn, items: list[Any], where: str, problem: str
) -> None:
    before = counts(jobs)

    error = invalid(jobs, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(items),))

    message = error.diag.message_primary or ""
    assert message.startswith(f"fn_job_enqueue_many: {where}"), message
    assert problem in message
    assert counts(jobs) == before


def test_enqueue_many_rejects_a_non_array(jobs: Conn) -> None:
    error = invalid(jobs, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb({"kind": "ok"}),))

    assert (error.diag.message_primary or "").startswith(
        "fn_job_enqueue_many: jobs must be a JSON array"
    )


# --------------------------------------------------------------------------- claim


def test_claim_leases_a_job_and_counts_the_attempt(jobs: Conn) -> None:
    job_id = enqueue_id(jobs, "demo.echo", payload={"n": 1})

    job = claim_one(jobs, worker="host-1:42", lease_seconds=30)

    assert job["job_id"] == job_id
    assert (job["kind"], job["queue"], job["payload"], job["priority"]) == (
        "demo.echo",
        "default",
        {"n": 1},
        0,
    )
    assert job["attempts"] == 1
    assert job["max_attempts"] == 5
    assert ts(job["lease_expires_at"]) == now(jobs, "30 seconds")
    row = job_row(jobs, job_id)
    assert row is not None
    assert row["status"] == "in_progress"
    assert str(row["lease_token"]) == job["lease_token"]
    assert row["leased_by"] == "host-1:42"
    assert row["started_at"] == now(jobs)


def test_claim_uses_the_configured_default_lease(jobs: Conn) -> None:
    set_flag(jobs, "queue.lease.default_seconds", 90)
    enqueue_id(jobs)

    job = claim_one(jobs)

    assert ts(job["lease_expires_at"]) == now(jobs, "90 seconds")


def test_claim_returns_an_empty_list_when_nothing_is_ready(jobs: Conn) -> None:
    assert claim(jobs, queues=[unique("empty-")]) == []


def test_claim_orders_by_priority_then_run_at_then_id(jobs: Conn) -> None:
    queue = unique("order-")
    late_low = enqueue_id(jobs, queue=queue, priority=0, run_at=now(jobs, "-1 minute"))
    early_low = enqueue_id(jobs, queue=queue, priority=0, run_at=now(jobs, "-2 minutes"))
    high = enqueue_id(jobs, queue=queue, priority=10, run_at=now(jobs, "-1 second"))
    tie_a = enqueue_id(jobs, queue=queue, priority=-5, run_at=now(jobs, "-3 minutes"))
    tie_b = enqueue_id(jobs, queue=queue, priority=-5, run_at=now(jobs, "-3 minutes"))

    claimed = claim(jobs, queues=[queue], batch=10)

    assert [j["job_id"] for j in claimed] == [high, early_low, late_low, tie_a, tie_b]


def test_claim_takes_at_most_batch_jobs_best_first(jobs: Conn) -> None:
    queue = unique("batch-")
    ids = [enqueue_id(jobs, queue=queue, priority=p) for p in (1, 3, 2)]

    claimed = claim(jobs, queues=[queue], batch=2)

    assert [j["job_id"] for j in claimed] == [ids[1], ids[2]]


def test_claim_does_not_return_jobs_scheduled_in_the_future(jobs: Conn) -> None:
    queue = unique("future-")
    enqueue_id(jobs, queue=queue, run_at=now(jobs, "1 second"), priority=100)
    ready = enqueue_id(jobs, queue=queue)

    claimed = claim(jobs, queues=[queue], batch=10)

    assert [j["job_id"] for j in claimed] == [ready]


def test_claim_filters_by_kind(jobs: Conn) -> None:
    queue = unique("kinds-")
    enqueue_id(jobs, "a.first", queue=queue)
    wanted = enqueue_id(jobs, "b.second", queue=queue)
    also = enqueue_id(jobs, "c.third", queue=queue)

    claimed = claim(jobs, queues=[queue], kinds=["b.second", "c.third"], batch=10)

    assert [j["job_id"] for j in claimed] == [wanted, also]


def test_claim_takes_only_the_default_queue_unless_told_otherwise(jobs: Conn) -> None:
    other = enqueue_id(jobs, queue=unique("other-"))
    default = enqueue_id(jobs)

    claimed_ids = [j["job_id"] for j in claim(jobs, batch=1000)]

    assert default in claimed_ids and other not in claimed_ids


def test_claim_from_several_queues_orders_across_them(jobs: Conn) -> None:
    q1, q2, q3 = unique("q1-"), unique("q2-"), unique("q3-")
    a = enqueue_id(jobs, queue=q1, priority=1)
    b = enqueue_id(jobs, queue=q2, priority=3)
    c = enqueue_id(jobs, queue=q1, priority=2)
    enqueue_id(jobs, queue=q3, priority=9)  # not asked for

    claimed = claim(jobs, queues=[q1, q2, q1], batch=10)

    assert [j["job_id"] for j in claimed] == [b, c, a]


@pytest.mark.parametrize(
    ("job_limit", "kind_limit", "default_limit", "expected"),
    [(2, 7, 9, 2), (None, 7, 9, 7), (None, None, 9, 9), (None, "seven", 9, 9)],
    ids=["own", "per-kind", "default", "per-kind-not-a-number"],
)
def test_claim_resolves_max_attempts_from_job_then_kind_then_default(
    jobs: Conn, job_limit: Any, kind_limit: Any, default_limit: int, expected: int
) -> None:
    if kind_limit is not None:
        jobs.execute(
            "INSERT INTO dot_config (key, value) VALUES ('queue.retry.max_attempts.mail.send', %s)",
            (Jsonb(kind_limit),),
        )
    set_flag(jobs, "queue.retry.max_attempts.default", default_limit)
    enqueue_id(jobs, "mail.send", max_attempts=job_limit)

    assert claim_one(jobs)["max_attempts"] == expected


INVALID_CLAIMS = [
    pytest.param("worker => ''", "worker", id="worker-empty"),
    pytest.param("worker => NULL", "worker", id="worker-missing"),
    pytest.param("worker => 'w', queues => '{}'", "queues", id="queues-empty"),
    pytest.param("worker => 'w', queues => ARRAY[NULL]::text[]", "queues", id="queues-null"),
    pytest.param("worker => 'w', kinds => '{}'", "kinds", id="kinds-empty"),
    pytest.param("worker => 'w', batch => 0", "batch", id="batch-zero"),
    pytest.param("worker => 'w', batch => 1001", "batch", id="batch-too-big"),
    pytest.param("worker => 'w', lease_seconds => 0", "lease_seconds", id="lease-zero"),
    pytest.param("worker => 'w', lease_seconds => 86401", "lease_seconds", id="lease-too-long"),
]


@pytest.mark.parametrize(("arguments", "argument"), INVALID_CLAIMS)
def test_claim_rejects_an_invalid_argument_by_name(
    jobs: Conn, arguments: str, argument: str
) -> None:
    enqueue_id(jobs)
    before = jobs.execute("SELECT * FROM job_queue ORDER BY id").fetchall()

    error = invalid(jobs, f"SELECT fn_job_claim({arguments})")

    assert (error.diag.message_primary or "").startswith(f"fn_job_claim: {argument} ")
    assert jobs.execute("SELECT * FROM job_queue ORDER BY id").fetchall() == before


def test_claim_skips_jobs_locked_by_another_transaction(live: Connect) -> None:
    first, second = live(autocommit=False), live()
    second.execute("SET lock_timeout = '5s'")  # a claim that waits instead of skipping fails fast
    queue = unique("skip-")
    one, two = enqueue_id(second, queue=queue), enqueue_id(second, queue=queue)

    held = claim_one(first, queues=[queue])  # transaction left open: the row stays locked
    taken = claim_one(second, queues=[queue])

    assert (held["job_id"], taken["job_id"]) == (one, two)
    first.rollback()
    assert claim_one(second, queues=[queue])["job_id"] == one


def test_two_claimers_never_receive_the_same_job(live: Connect) -> None:
    first, second = live(autocommit=False), live(autocommit=False)
    second.execute("SET lock_timeout = '5s'")  # a claim that waits instead of skipping fails fast
    second.commit()
    queue = unique("split-")
    for _ in range(6):
        enqueue_id(first, queue=queue)
    first.commit()

    a = claim(first, queues=[queue], batch=4)
    b = claim(second, queues=[queue], batch=4)

    assert len(a) == 4 and len(b) == 2
    assert not {j["job_id"] for j in a} & {j["job_id"] for j in b}
    first.rollback()
    second.rollback()


# --------------------------------------------------------------------------- lease fencing

FENCED_CALLS = {
    "fn_job_complete": leased_call("fn_job_complete"),
    "fn_job_fail_transient": leased_call("fn_job_fail_transient", ", error => 'x'"),
    "fn_job_fail_permanent": leased_call("fn_job_fail_permanent", ", error => 'x'"),
    "fn_job_extend_lease": leased_call("fn_job_extend_lease"),
    "fn_job_snooze": leased_call("fn_job_snooze", ", seconds => 9"),
    "fn_job_release": leased_call("fn_job_release"),
    "fn_job_cancel_ack": leased_call("fn_job_cancel_ack"),
}


@pytest.mark.parametrize("function", sorted(FENCED_CALLS))
def test_a_stale_lease_token_is_refused_and_changes_nothing(jobs: Conn, function: str) -> None:
    queue = unique("fence-")
    enqueue_id(jobs, queue=queue)
    stale = claim_one(jobs, queues=[queue])
    fresh = reclaim_with_new_token(jobs, stale)
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (fresh["job_id"],))  # cancel_ack could act
    before_row, before_counts = job_row(jobs, stale["job_id"]), counts(jobs)

    answer = call(
        jobs, FENCED_CALLS[function], {"job_id": stale["job_id"], "token": stale["lease_token"]}
    )

    assert answer == {"refused": True, "reason": "lease_lost", "job_id": stale["job_id"]}
    assert job_row(jobs, stale["job_id"]) == before_row
    assert counts(jobs) == before_counts


@pytest.mark.parametrize("function", sorted(FENCED_CALLS))
def test_an_unknown_job_is_lease_lost(jobs: Conn, function: str) -> None:
    answer = call(jobs, FENCED_CALLS[function], {"job_id": -1, "token": str(uuid.uuid4())})

    assert answer == {"refused": True, "reason": "lease_lost", "job_id": -1}


@pytest.mark.parametrize("function", sorted(FENCED_CALLS))
def test_worker_calls_require_job_id_and_lease_token(jobs: Conn, function: str) -> None:
    error = invalid(jobs, FENCED_CALLS[function], {"job_id": 1, "token": None})

    assert (error.diag.message_primary or "").startswith(
        f"{function}: job_id and lease_token are required"
    )


# --------------------------------------------------------------------------- complete


def test_complete_marks_the_job_succeeded_and_keeps_the_result(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    answer = call(
        jobs,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s, result => %s)",
        (job_id, job["lease_token"], Jsonb({"sent": True})),
    )

    assert answer == {"ok": True, "job_id": job_id}
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["result"], row["finished_at"]) == (
        "succeeded",
        {"sent": True},
        now(jobs),
    )
    assert str(row["lease_token"]) == job["lease_token"]  # kept: a repeat is recognised


def test_a_repeated_complete_with_the_same_token_answers_already(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    complete = "SELECT fn_job_complete(job_id => %s, lease_token => %s)"
    call(jobs, complete, (job_id, job["lease_token"]))

    again = call(jobs, complete, (job_id, job["lease_token"]))

    assert again == {"ok": True, "job_id": job_id, "already": True}


def test_complete_with_another_token_after_success_is_lease_lost(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    call(
        jobs,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    answer = call(
        jobs, "SELECT fn_job_complete(job_id => %s, lease_token => %s)", (job_id, str(uuid.uuid4()))
    )

    assert answer == {"refused": True, "reason": "lease_lost", "job_id": job_id}


def test_complete_many_completes_valid_pairs_and_reports_lost_leases(jobs: Conn) -> None:
    queue = unique("many-")
    for _ in range(3):
        enqueue_id(jobs, queue=queue)
    a, b, c = claim(jobs, queues=[queue], batch=3)
    call(
        jobs,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s)",
        (a["job_id"], a["lease_token"]),
    )
    reclaim_with_new_token(jobs, c)  # c's token is stale now

    answer = call(
        jobs,
        "SELECT fn_job_complete_many(job_ids => %s::bigint[], lease_tokens => %s::uuid[])",
        (
            [b["job_id"], a["job_id"], c["job_id"]],
            [b["lease_token"], a["lease_token"], c["lease_token"]],
        ),
    )

    assert answer == {
        "ok": True,
        "completed": [b["job_id"], a["job_id"]],  # a: already completed with that token
        "lease_lost": [c["job_id"]],
    }
    statuses = jobs.execute(
        "SELECT id, status FROM job_queue WHERE id = ANY(%s) ORDER BY id",
        ([a["job_id"], b["job_id"], c["job_id"]],),
    ).fetchall()
    assert dict(statuses) == {
        a["job_id"]: "succeeded",
        b["job_id"]: "succeeded",
        c["job_id"]: "in_progress",
    }


@pytest.mark.parametrize(
    ("job_ids", "tokens"),
    [([1, 2], [str(uuid.uuid4())]), ([1, None], [str(uuid.uuid4())] * 2), (None, [])],
    ids=["different-length", "null-element", "null-array"],
)
def test_complete_many_rejects_mismatched_arrays(jobs: Conn, job_ids: Any, tokens: Any) -> None:
    error = invalid(
        jobs,
        "SELECT fn_job_complete_many(job_ids => %s::bigint[], lease_tokens => %s::uuid[])",
        (job_ids, tokens),
    )

    assert (error.diag.message_primary or "").startswith("fn_job_complete_many: job_ids")


# --------------------------------------------------------------------------- failures


def test_fail_transient_requeues_after_the_given_delay_and_keeps_the_error(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    answer = call(
        jobs,
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s, error => 'timeout',"
        " retry_in_seconds => 30)",
        (job_id, job["lease_token"]),
    )

    assert answer["ok"] is True and answer["status"] == "queued"
    assert ts(answer["run_at"]) == now(jobs, "30 seconds")
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 1, "timeout")
    assert (row["lease_token"], row["leased_by"], row["lease_expires_at"]) == (None, None, None)


def test_fail_transient_waits_queue_retry_base_seconds_by_default(jobs: Conn) -> None:
    set_flag(jobs, "queue.retry.base_seconds", 7)
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    answer = call(
        jobs,
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    assert ts(answer["run_at"]) == now(jobs, "7 seconds")


def test_fail_transient_truncates_the_error_to_2000_characters(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    call(
        jobs,
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s, error => %s)",
        (job_id, job["lease_token"], "é" * 5000),
    )

    row = job_row(jobs, job_id)
    assert row is not None and row["last_error"] == "é" * 2000


def test_fail_transient_rejects_a_negative_delay(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    error = invalid(
        jobs,
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s, retry_in_seconds => -1)",
        (job_id, job["lease_token"]),
    )

    assert (error.diag.message_primary or "").startswith("fn_job_fail_transient: retry_in_seconds ")
    row = job_row(jobs, job_id)
    assert row is not None and row["status"] == "in_progress"


def test_exhausted_attempts_move_the_job_to_the_dead_letter_queue_with_its_full_row(
    jobs: Conn,
) -> None:
    queue = unique("poison-")
    job_id = enqueue_id(jobs, "poison.pill", payload={"n": 1}, queue=queue, max_attempts=2)
    fail = (
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s, error => %s,"
        " retry_in_seconds => 0)"
    )
    first = claim_one(jobs, queues=[queue])
    assert call(jobs, fail, (job_id, first["lease_token"], "boom 1"))["status"] == "queued"
    second = claim_one(jobs, queues=[queue])

    answer = call(jobs, fail, (job_id, second["lease_token"], "boom 2"))

    assert answer["ok"] is True and answer["status"] == "dead_letter"
    assert job_row(jobs, job_id) is None
    dead = dead_letter_row(jobs, answer["dead_letter_id"])
    assert dead is not None
    assert (dead["job_id"], dead["queue"], dead["kind"], dead["payload"]) == (
        job_id,
        queue,
        "poison.pill",
        {"n": 1},
    )
    assert (dead["reason"], dead["error"], dead["attempts"]) == (
        "max_attempts_exhausted",
        "boom 2",
        2,
    )
    assert dead["resolved_at"] is None
    assert dead["job"]["id"] == job_id
    assert dead["job"]["payload"] == {"n": 1}
    assert dead["job"]["max_attempts"] == 2
    assert dead["job"]["last_error"] == "boom 2"
    assert dead["job"]["lease_token"] == second["lease_token"]


def test_a_job_gets_exactly_its_configured_attempts(jobs: Conn) -> None:
    jobs.execute(
        "INSERT INTO dot_config (key, value) VALUES ('queue.retry.max_attempts.flaky.job', '3')"
    )
    queue = unique("flaky-")
    job_id = enqueue_id(jobs, "flaky.job", queue=queue)
    outcomes = []
    for _ in range(3):
        job = claim_one(jobs, queues=[queue])
        outcomes.append(
            call(
                jobs,
                "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s,"
                " retry_in_seconds => 0)",
                (job_id, job["lease_token"]),
            )["status"]
        )

    assert outcomes == ["queued", "queued", "dead_letter"]
    assert claim(jobs, queues=[queue]) == []


def test_fail_permanent_moves_the_job_to_the_dead_letter_queue(jobs: Conn) -> None:
    job_id = enqueue_id(jobs, "bad.input", payload={"n": 1})
    job = claim_one(jobs)

    answer = call(
        jobs,
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => %s)",
        (job_id, job["lease_token"], "x" * 3000),
    )

    assert answer["ok"] is True and answer["status"] == "dead_letter"
    assert job_row(jobs, job_id) is None
    dead = dead_letter_row(jobs, answer["dead_letter_id"])
    assert dead is not None
    assert (dead["reason"], dead["attempts"], dead["error"]) == ("permanent_failure", 1, "x" * 2000)


# --------------------------------------------------------------------------- lease extension


def test_extend_lease_moves_the_expiry_from_the_clock_not_the_transaction_start(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs, lease_seconds=10)
    extend = "SELECT fn_job_extend_lease(job_id => %s, lease_token => %s, lease_seconds => 600)"

    first = call(jobs, extend, (job_id, job["lease_token"]))
    second = call(jobs, extend, (job_id, job["lease_token"]))

    assert first["ok"] is True and first["cancel_requested"] is False
    assert ts(first["lease_expires_at"]) > now(jobs, "599 seconds")
    assert ts(second["lease_expires_at"]) > ts(first["lease_expires_at"])  # clock_timestamp()
    row = job_row(jobs, job_id)
    assert row is not None and row["lease_expires_at"] == ts(second["lease_expires_at"])


def test_extend_lease_tells_the_worker_that_cancellation_was_requested(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    answer = call(
        jobs,
        "SELECT fn_job_extend_lease(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    assert answer["ok"] is True and answer["cancel_requested"] is True


def test_extend_lease_rejects_an_out_of_range_lease(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    error = invalid(
        jobs,
        "SELECT fn_job_extend_lease(job_id => %s, lease_token => %s, lease_seconds => 0)",
        (job_id, job["lease_token"]),
    )

    assert (error.diag.message_primary or "").startswith("fn_job_extend_lease: lease_seconds ")


# --------------------------------------------------------------------------- snooze and release


def test_snooze_requeues_later_without_spending_the_attempt(jobs: Conn) -> None:
    queue = unique("snooze-")
    job_id = enqueue_id(jobs, queue=queue)
    job = claim_one(jobs, queues=[queue])

    answer = call(
        jobs,
        "SELECT fn_job_snooze(job_id => %s, lease_token => %s, seconds => 45)",
        (job_id, job["lease_token"]),
    )

    assert answer["status"] == "queued" and ts(answer["run_at"]) == now(jobs, "45 seconds")
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["attempts"], row["lease_token"]) == ("queued", 0, None)
    assert claim(jobs, queues=[queue]) == []  # not before its time


def test_release_requeues_at_once_in_its_place_without_spending_the_attempt(jobs: Conn) -> None:
    queue = unique("release-")
    first = enqueue_id(jobs, queue=queue, run_at=now(jobs, "-1 minute"))
    second = enqueue_id(jobs, queue=queue)
    job = claim_one(jobs, queues=[queue])
    assert job["job_id"] == first

    answer = call(
        jobs, "SELECT fn_job_release(job_id => %s, lease_token => %s)", (first, job["lease_token"])
    )

    assert answer["status"] == "queued"
    row = job_row(jobs, first)
    assert row is not None and (row["status"], row["attempts"]) == ("queued", 0)
    assert [j["job_id"] for j in claim(jobs, queues=[queue], batch=2)] == [first, second]


# --------------------------------------------------------------------------- cancel


def test_cancel_of_a_queued_job_cancels_it(jobs: Conn) -> None:
    queue = unique("cancel-")
    job_id = enqueue_id(jobs, queue=queue)

    answer = call(jobs, "SELECT fn_job_cancel(job_id => %s, reason => 'customer left')", (job_id,))

    assert answer == {"ok": True, "job_id": job_id, "status": "cancelled"}
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["finished_at"], row["cancel_reason"]) == (
        "cancelled",
        now(jobs),
        "customer left",
    )
    assert claim(jobs, queues=[queue]) == []


def test_cancel_of_a_running_job_asks_the_worker_to_stop(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    answer = call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))
    again = call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    assert answer == again == {"ok": True, "job_id": job_id, "status": "cancel_requested"}
    row = job_row(jobs, job_id)
    assert row is not None
    assert (row["status"], row["cancel_requested_at"]) == ("in_progress", now(jobs))
    assert str(row["lease_token"]) == job["lease_token"]


def test_cancel_ack_ends_a_cancel_requested_job_as_cancelled(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))
    ack = "SELECT fn_job_cancel_ack(job_id => %s, lease_token => %s)"

    answer = call(jobs, ack, (job_id, job["lease_token"]))
    again = call(jobs, ack, (job_id, job["lease_token"]))

    assert answer == {"ok": True, "job_id": job_id, "status": "cancelled"}
    assert again == {"ok": True, "job_id": job_id, "status": "cancelled", "already": True}
    row = job_row(jobs, job_id)
    assert row is not None and (row["status"], row["finished_at"]) == ("cancelled", now(jobs))


def test_cancel_ack_of_a_job_nobody_cancelled_is_refused(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)

    answer = call(
        jobs,
        "SELECT fn_job_cancel_ack(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    assert answer == {"refused": True, "reason": "cancel_not_requested", "job_id": job_id}
    row = job_row(jobs, job_id)
    assert row is not None and row["status"] == "in_progress"


def test_a_cancel_requested_job_can_still_complete(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    answer = call(
        jobs,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    assert answer == {"ok": True, "job_id": job_id}


@pytest.mark.parametrize(
    "query",
    [
        "SELECT fn_job_fail_transient(job_id => %s, lease_token => %s)",
        "SELECT fn_job_snooze(job_id => %s, lease_token => %s, seconds => 60)",
        "SELECT fn_job_release(job_id => %s, lease_token => %s)",
    ],
    ids=["fail_transient", "snooze", "release"],
)
def test_a_cancel_requested_job_is_not_queued_again(jobs: Conn, query: str) -> None:
    queue = unique("noretry-")
    job_id = enqueue_id(jobs, queue=queue)
    job = claim_one(jobs, queues=[queue])
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    answer = call(jobs, query, (job_id, job["lease_token"]))

    assert answer == {"ok": True, "job_id": job_id, "status": "cancelled"}
    row = job_row(jobs, job_id)
    assert row is not None and row["status"] == "cancelled"


def test_fail_permanent_of_a_cancel_requested_job_still_dead_letters_it(jobs: Conn) -> None:
    job_id = enqueue_id(jobs)
    job = claim_one(jobs)
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    answer = call(
        jobs,
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s)",
        (job_id, job["lease_token"]),
    )

    assert answer["status"] == "dead_letter"


@pytest.mark.parametrize("ending", ["succeeded", "cancelled", "dead_letter"])
def test_cancel_of_a_finished_job_is_refused(jobs: Conn, ending: str) -> None:
    job_id = enqueue_id(jobs)
    if ending == "cancelled":
        call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))
    else:
        job = claim_one(jobs)
        function = "fn_job_complete" if ending == "succeeded" else "fn_job_fail_permanent"
        call(
            jobs,
            f"SELECT {function}(job_id => %s, lease_token => %s)",
            (job_id, job["lease_token"]),
        )
    before = job_row(jobs, job_id)

    answer = call(jobs, "SELECT fn_job_cancel(job_id => %s)", (job_id,))

    assert answer == {
        "refused": True,
        "reason": "already_finished",
        "job_id": job_id,
        "status": ending,
    }
    assert job_row(jobs, job_id) == before


def test_cancel_of_an_unknown_job_is_refused(jobs: Conn) -> None:
    answer = call(jobs, "SELECT fn_job_cancel(job_id => -1)")

    assert answer == {"refused": True, "reason": "not_found", "job_id": -1}


# --------------------------------------------------------------------------- views

VIEWS = [
    "v_job_queue_backlog",
    "v_job_queue_in_progress",
    "v_job_queue_dead_letter_open",
    "v_dead_letter_all",
]


def test_views_show_no_payload(jobs: Conn) -> None:
    secret = {"ssn": "078-05-1120-SECRET"}
    queue = unique("pii-")
    enqueue_id(jobs, queue=queue, payload=secret)
    enqueue_id(jobs, queue=queue, payload=secret)
    enqueue_id(jobs, queue=queue, payload=secret)
    _running, doomed = claim(jobs, queues=[queue], batch=2)
    call(
        jobs,
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s)",
        (doomed["job_id"], doomed["lease_token"]),
    )

    for view in VIEWS:
        columns = {
            row[0]
            for row in jobs.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'conveyor' AND table_name = %s",
                (view,),
            )
        }
        assert columns, view
        assert not columns & {"payload", "job", "result"}, view
        text = scalar(jobs, f"SELECT coalesce(json_agg(v)::text, '') FROM {view} AS v")
        assert "SECRET" not in text, view
        assert queue in text, view  # the view does show the jobs


def test_backlog_counts_ready_and_scheduled_jobs_per_queue_and_kind(jobs: Conn) -> None:
    queue = unique("backlog-")
    enqueue_id(jobs, "a.kind", queue=queue, run_at=now(jobs, "-10 minutes"), priority=2)
    enqueue_id(jobs, "a.kind", queue=queue, priority=5)
    enqueue_id(jobs, "a.kind", queue=queue, run_at=now(jobs, "1 hour"))
    enqueue_id(jobs, "b.kind", queue=queue)
    enqueue_id(jobs, "c.kind", queue=queue)
    claim(jobs, queues=[queue], kinds=["c.kind"])  # in progress: not backlog

    with jobs.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "SELECT kind, ready_count, scheduled_count, oldest_ready_age, max_priority"
            " FROM v_job_queue_backlog WHERE queue = %s ORDER BY kind",
            (queue,),
        ).fetchall()

    assert [
        (r["kind"], r["ready_count"], r["scheduled_count"], r["max_priority"]) for r in rows
    ] == [
        ("a.kind", 2, 1, 5),
        ("b.kind", 1, 0, 0),
    ]
    assert rows[0]["oldest_ready_age"].total_seconds() == 600


def test_backlog_is_empty_without_queued_jobs(jobs: Conn) -> None:
    jobs.execute("DELETE FROM job_queue")

    assert scalar(jobs, "SELECT count(*) FROM v_job_queue_backlog") == 0


def test_in_progress_view_shows_each_running_job_and_whether_its_lease_expired(jobs: Conn) -> None:
    queue = unique("running-")
    enqueue_id(jobs, "a.kind", queue=queue)
    enqueue_id(jobs, "a.kind", queue=queue)
    fresh, expired = claim(jobs, worker="w9", queues=[queue], batch=2)
    jobs.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (expired["job_id"],),
    )
    call(jobs, "SELECT fn_job_cancel(job_id => %s)", (fresh["job_id"],))

    rows = jobs.execute(
        "SELECT id, attempts, leased_by, lease_expired, cancel_requested"
        " FROM v_job_queue_in_progress WHERE queue = %s ORDER BY id",
        (queue,),
    ).fetchall()

    assert rows == [
        (fresh["job_id"], 1, "w9", False, True),
        (expired["job_id"], 1, "w9", True, False),
    ]


def test_dead_letter_views_list_open_and_all_dead_letters(jobs: Conn) -> None:
    queue = unique("dlq-")
    enqueue_id(jobs, queue=queue)
    enqueue_id(jobs, queue=queue)
    one, two = claim(jobs, queues=[queue], batch=2)
    dead = [
        call(
            jobs,
            "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => 'bad')",
            (job["job_id"], job["lease_token"]),
        )["dead_letter_id"]
        for job in (one, two)
    ]
    jobs.execute(
        "UPDATE job_dead_letter SET resolved_at = now(), resolved_by = 'ops' WHERE id = %s",
        (dead[0],),
    )

    open_rows = jobs.execute(
        "SELECT id, job_id, reason, error FROM v_job_queue_dead_letter_open WHERE queue = %s",
        (queue,),
    ).fetchall()
    all_rows = jobs.execute(
        "SELECT id, resolved_by FROM v_dead_letter_all WHERE queue = %s ORDER BY id", (queue,)
    ).fetchall()

    assert open_rows == [(dead[1], two["job_id"], "permanent_failure", "bad")]
    assert all_rows == [(dead[0], "ops"), (dead[1], None)]


# --------------------------------------------------------------------------- privileges


def test_the_worker_role_calls_functions_but_cannot_touch_tables(jobs: Conn) -> None:
    jobs.execute("SET LOCAL ROLE conveyor_worker")

    assert enqueue(jobs)["ok"] is True
    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SELECT count(*) FROM job_queue")
    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SELECT count(*) FROM job_dead_letter")


def test_the_reader_role_reads_views_but_cannot_call_functions(jobs: Conn) -> None:
    jobs.execute("SET LOCAL ROLE conveyor_reader")

    for view in VIEWS:
        jobs.execute(f"SELECT * FROM {view}")
    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SELECT fn_job_enqueue(kind => 'demo.echo')")
    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SELECT count(*) FROM job_queue")


def test_private_helpers_are_not_callable_by_the_worker_role(jobs: Conn) -> None:
    jobs.execute("SET LOCAL ROLE conveyor_worker")

    with pytest.raises(errors.InsufficientPrivilege), jobs.transaction():
        jobs.execute("SELECT fn_job__max_attempts('x', NULL)")


def test_a_paused_queue_is_not_claimed_from_until_it_is_resumed(db) -> None:
    db.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    paused = db.execute("SELECT fn_job_enqueue(kind => 'k.paused', queue => 'held')").fetchone()[0][
        "job_id"
    ]
    other = db.execute("SELECT fn_job_enqueue(kind => 'k.other', queue => 'open')").fetchone()[0][
        "job_id"
    ]
    assert db.execute("SELECT fn_job_queue_pause(queue => 'held', paused_by => 'ops')").fetchone()[
        0
    ]["ok"]

    claimed = db.execute(
        "SELECT fn_job_claim(worker => 'w', queues => ARRAY['held', 'open'], batch => 10)"
    ).fetchone()[0]
    assert [job["job_id"] for job in claimed["jobs"]] == [other]
    only_paused = db.execute(
        "SELECT fn_job_claim(worker => 'w', queues => ARRAY['held'])"
    ).fetchone()[0]
    assert only_paused == {"ok": True, "jobs": [], "paused": True}
    assert db.execute(
        "SELECT updated_by FROM conveyor.dot_config WHERE key = 'queue.paused_queues'"
    ).fetchone() == ("ops",)

    db.execute("SELECT fn_job_queue_resume(queue => 'held')")
    resumed = db.execute("SELECT fn_job_claim(worker => 'w', queues => ARRAY['held'])").fetchone()[
        0
    ]
    assert [job["job_id"] for job in resumed["jobs"]] == [paused]


def test_pausing_an_invalid_queue_name_is_an_error_naming_it(db) -> None:
    db.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="queue 'Bad Name'"):
        db.execute("SELECT fn_job_queue_pause(queue => 'Bad Name')")


def test_enqueue_many_treats_json_null_fields_as_the_defaults(db) -> None:
    db.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'"
    )
    answer = db.execute(
        'SELECT fn_job_enqueue_many(jobs => \'[{"kind": "k.nulls", "priority": null,'
        ' "max_attempts": null, "queue": null, "run_at": null}]\')'
    ).fetchone()[0]
    assert answer["created"] == 1
    row = db.execute(
        "SELECT priority, max_attempts, queue FROM job_queue WHERE id = %s", (answer["job_ids"][0],)
    ).fetchone()
    assert row == (0, None, "default")
