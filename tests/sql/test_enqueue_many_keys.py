"""fn_job_enqueue_many's writer, fn_job__enqueue_insert: the keyless batch (one plain INSERT),
idempotency keys repeated within a batch or held by stored rows, mixed batches, and
jobs[i].concurrency_key: refused before phase 8, checked and stored under it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from conveyor import jobs as client
from conveyor.errors import InvalidInput
from helpers import SEARCH_PATH_OPTION, apply_phases, scalar, set_flag, unique, with_database

Conn = psycopg.Connection[Any]

# The columns a caller can set, read back in input order.
STORED = (
    "SELECT jq.queue, jq.kind, jq.payload, jq.priority, jq.status, jq.run_at = now(),"
    " jq.idempotency_key, jq.max_attempts"
    "  FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(id, ord)"
    "  JOIN job_queue AS jq ON jq.id = u.id ORDER BY u.ord"
)


def enqueue_many(conn: Conn, items: list[Any]) -> dict[str, Any]:
    """fn_job_enqueue_many's answer."""
    return dict(scalar(conn, "SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(items),)))


def invalid(conn: Conn, items: list[Any]) -> str:
    """Call fn_job_enqueue_many expecting 22023 with a hint (in a savepoint); return the message."""
    with pytest.raises(errors.InvalidParameterValue) as caught, conn.transaction():
        enqueue_many(conn, items)
    assert caught.value.diag.message_hint, "an invalid argument error must carry a HINT"
    return caught.value.diag.message_primary or ""


def rows(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM job_queue"))


@pytest.fixture(scope="module")
def phase8_dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A database of this module's own with phases 0–4 and 8 applied, substrate on."""
    name = f"conveyor_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(pg_admin_dsn, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            apply_phases(conn, (2, 3, 4, 8))
            set_flag(conn, "queue.job_substrate.enabled", True)
        yield url
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def limits(phase8_dsn: str) -> Iterator[Conn]:
    """A transaction on the phase 8 database, rolled back after the test."""
    conn = psycopg.connect(phase8_dsn, autocommit=False, options=SEARCH_PATH_OPTION)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


# --------------------------------------------------------------------------- no keys


def test_a_batch_without_keys_inserts_every_job_with_ids_ascending_in_input_order(
    jobs: Conn,
) -> None:
    items = [{"kind": "k.fast", "payload": {"n": n}} for n in range(200)]

    answer = enqueue_many(jobs, items)

    ids = answer["job_ids"]
    assert answer["ok"] is True
    assert answer["created"] == 200
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    payloads = jobs.execute(
        "SELECT jq.payload FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(id, ord)"
        " JOIN job_queue AS jq ON jq.id = u.id ORDER BY u.ord",
        (ids,),
    ).fetchall()
    assert [p[0] for p in payloads] == [{"n": n} for n in range(200)]


def test_a_batch_without_keys_stores_the_same_columns_as_a_batch_with_keys(jobs: Conn) -> None:
    given: dict[str, Any] = {"kind": "k.cols", "queue": "cols", "priority": 7, "max_attempts": 3}
    plain = [{"kind": "k.cols"}, {**given, "payload": {"a": 1}}]
    keyed = [{**item, "idempotency_key": unique("cols-")} for item in plain]

    plain_rows = jobs.execute(STORED, (enqueue_many(jobs, plain)["job_ids"],)).fetchall()
    keyed_rows = jobs.execute(STORED, (enqueue_many(jobs, keyed)["job_ids"],)).fetchall()

    assert [row[:6] + row[7:] for row in plain_rows] == [row[:6] + row[7:] for row in keyed_rows]
    assert plain_rows[0] == ("default", "k.cols", {}, 0, "queued", True, None, None)
    assert [row[6] for row in keyed_rows] == [item["idempotency_key"] for item in keyed]


# --------------------------------------------------------------------------- idempotency keys


def test_a_key_repeated_within_the_batch_inserts_the_first_element_and_reports_it(
    jobs: Conn,
) -> None:
    key = unique("dup-")

    answer = enqueue_many(
        jobs,
        [
            {"kind": "k.dup", "idempotency_key": key, "payload": {"first": True}},
            {"kind": "k.dup", "idempotency_key": key, "payload": {"second": True}},
            {"kind": "k.dup", "idempotency_key": key},
        ],
    )

    first, second, third = answer["job_ids"]
    assert first == second == third
    assert answer["created"] == 1
    assert scalar(jobs, "SELECT payload FROM job_queue WHERE id = %s", (first,)) == {"first": True}


def test_a_key_a_live_job_holds_reports_that_job_and_adds_no_row(jobs: Conn) -> None:
    key = unique("live-")
    stored = enqueue_many(jobs, [{"kind": "k.live", "idempotency_key": key}])["job_ids"][0]
    before = rows(jobs)

    answer = enqueue_many(jobs, [{"kind": "k.live", "idempotency_key": key, "payload": {"x": 1}}])

    assert answer == {"ok": True, "job_ids": [stored], "created": 0}
    assert rows(jobs) == before


def test_a_key_whose_job_has_finished_is_free_again(jobs: Conn) -> None:
    key = unique("done-")
    old = enqueue_many(jobs, [{"kind": "k.done", "idempotency_key": key}])["job_ids"][0]
    assert scalar(jobs, "SELECT fn_job_cancel(job_id => %s)", (old,))["ok"] is True

    answer = enqueue_many(jobs, [{"kind": "k.done", "idempotency_key": key}])

    assert answer["created"] == 1
    assert answer["job_ids"] != [old]


def test_a_mixed_batch_answers_every_element_in_input_order(jobs: Conn) -> None:
    held, fresh = unique("held-"), unique("fresh-")
    held_id = enqueue_many(jobs, [{"kind": "k.mix", "idempotency_key": held}])["job_ids"][0]

    answer = enqueue_many(
        jobs,
        [
            {"kind": "k.mix", "payload": {"n": 0}},
            {"kind": "k.mix", "idempotency_key": held},
            {"kind": "k.mix", "idempotency_key": fresh, "payload": {"n": 2}},
            {"kind": "k.mix", "payload": {"n": 3}},
            {"kind": "k.mix", "idempotency_key": fresh},
        ],
    )

    keyless, held_answer, fresh_id, keyless_too, fresh_again = answer["job_ids"]
    assert held_answer == held_id
    assert fresh_again == fresh_id
    assert keyless < fresh_id < keyless_too  # new rows keep input order (FIFO)
    assert answer["created"] == 3
    payloads = [scalar(jobs, "SELECT payload FROM job_queue WHERE id = %s", (i,)) for i in
                (keyless, fresh_id, keyless_too)]  # fmt: skip
    assert payloads == [{"n": 0}, {"n": 2}, {"n": 3}]


# --------------------------------------------------------------------------- concurrency_key


def test_concurrency_key_is_refused_before_phase_8_naming_the_element_and_writing_nothing(
    jobs: Conn,
) -> None:
    before = rows(jobs)

    message = invalid(
        jobs, [{"kind": "k.ck"}, {"kind": "k.ck"}, {"kind": "k.ck", "concurrency_key": "tenant-1"}]
    )

    assert message.startswith("fn_job_enqueue_many: jobs[2].concurrency_key "), message
    assert "phase 8" in message
    assert rows(jobs) == before


def test_a_concurrency_key_that_is_not_a_string_is_refused_by_the_shape_check(jobs: Conn) -> None:
    message = invalid(jobs, [{"kind": "k.ck", "concurrency_key": 7}])

    assert message == "fn_job_enqueue_many: jobs[0].concurrency_key must be a JSON string or null"


def test_a_null_concurrency_key_is_accepted_before_phase_8(jobs: Conn) -> None:
    answer = enqueue_many(jobs, [{"kind": "k.ck", "concurrency_key": None}])

    assert answer["created"] == 1


@pytest.mark.parametrize("idempotent", [False, True], ids=["no-keys", "idempotency-keys"])
def test_concurrency_key_is_stored_under_phase_8(limits: Conn, idempotent: bool) -> None:
    items: list[dict[str, Any]] = [
        {"kind": "k.ck", "concurrency_key": "tenant-a"},
        {"kind": "k.ck"},
        {"kind": "k.ck", "concurrency_key": "tenant-b"},
    ]
    if idempotent:
        items = [{**item, "idempotency_key": unique("ck-")} for item in items]

    ids = enqueue_many(limits, items)["job_ids"]

    stored = limits.execute(
        "SELECT jq.concurrency_key FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(id, ord)"
        " JOIN job_queue AS jq ON jq.id = u.id ORDER BY u.ord",
        (ids,),
    ).fetchall()
    assert [row[0] for row in stored] == ["tenant-a", None, "tenant-b"]


@pytest.mark.parametrize(
    ("bad", "later_bad"), [("", "k" * 256), ("k" * 256, "")], ids=["empty", "256-bytes"]
)
def test_a_bad_concurrency_key_is_refused_naming_the_first_bad_element_and_inserting_nothing(
    limits: Conn, bad: str, later_bad: str
) -> None:
    before = rows(limits)

    message = invalid(
        limits,
        [
            {"kind": "k.ck", "concurrency_key": "fine"},
            {"kind": "k.ck", "concurrency_key": bad},
            {"kind": "k.ck", "concurrency_key": "fine"},
            {"kind": "k.ck", "concurrency_key": later_bad},
            {"kind": "k.ck", "concurrency_key": bad},
        ],
    )

    assert message == "fn_job_enqueue_many: jobs[1]: concurrency_key must be 1 to 255 bytes"
    assert rows(limits) == before


def test_the_python_client_passes_concurrency_key_through(limits: Conn) -> None:
    ids = client.enqueue_many(
        limits, [{"kind": "k.py", "concurrency_key": "tenant-py"}, {"kind": "k.py"}]
    )

    stored = [
        scalar(limits, "SELECT concurrency_key FROM job_queue WHERE id = %s", (i,)) for i in ids
    ]
    assert stored == ["tenant-py", None]


def test_the_python_client_raises_invalid_input_for_a_concurrency_key_before_phase_8(
    jobs: Conn,
) -> None:
    with pytest.raises(InvalidInput, match=r"jobs\[0\]\.concurrency_key needs phase 8"):
        client.enqueue_many(jobs, [{"kind": "k.py", "concurrency_key": "tenant-py"}])
