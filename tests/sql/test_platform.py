"""Phase 0, the platform: dot_config, the event vocabulary, the transactional outbox and its
cursors, the staging operations, the legacy auto-instantiate consumer and the outbound worker.
Plain SQL on real PostgreSQL; outbox reads need committed data, so those tests use `connect`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import scalar, set_flag, unique, wait_until

Connect = Callable[..., psycopg.Connection[Any]]

STAGING_TYPES = [
    "staging.record_marked",
    "staging.record_approved",
    "staging.record_consumed",
    "staging.record_verified",
    "staging.record_cleaned",
]
AUTO_COMPOSED = "iu.template.instance_auto_composed"


# --------------------------------------------------------------------------- helpers


def emit(
    conn: psycopg.Connection[Any],
    event_type: str = "staging.record_marked",
    payload: dict[str, Any] | None = None,
) -> int:
    return int(
        scalar(
            conn,
            "SELECT fn_outbox_emit(event_type => %s, payload => %s, source => 'tests')",
            (event_type, Jsonb(payload or {})),
        )
    )


def read_ids(conn: psycopg.Connection[Any], consumer: str, batch: int = 1000) -> list[int]:
    rows = conn.execute("SELECT id FROM fn_outbox_read(%s, %s)", (consumer, batch)).fetchall()
    return [row[0] for row in rows]


def read_rows(conn: psycopg.Connection[Any], consumer: str, batch: int = 1000) -> list[Any]:
    return conn.execute(
        "SELECT id, txid::text, event_type, payload FROM fn_outbox_read(%s, %s)",
        (consumer, batch),
    ).fetchall()


def advance(conn: psycopg.Connection[Any], consumer: str, txid: str, event_id: int) -> Any:
    return scalar(conn, "SELECT fn_outbox_advance(%s, %s::xid8, %s)", (consumer, txid, event_id))


def txid_of(conn: psycopg.Connection[Any], event_id: int) -> str:
    return str(scalar(conn, "SELECT txid::text FROM event_outbox WHERE id = %s", (event_id,)))


def readable(conn: psycopg.Connection[Any], ids: list[int]) -> bool:
    """True once every event in *ids* belongs to a transaction older than every running one."""
    return bool(
        scalar(
            conn,
            """SELECT count(*) = %s FROM event_outbox AS eo
                WHERE eo.id = ANY(%s) AND eo.txid < fn_outbox_horizon()""",
            (len(ids), ids),
        )
    )


def consumer_at_end(conn: psycopg.Connection[Any], prefix: str = "test.") -> str:
    """A new consumer positioned after every event committed so far (autocommit *conn*)."""
    consumer = unique(prefix)
    wait_until(
        lambda: scalar(
            conn,
            """SELECT NOT EXISTS (SELECT 1 FROM event_outbox AS eo
                                   WHERE eo.txid >= fn_outbox_horizon())""",
        )
    )
    last = conn.execute(
        "SELECT eo.txid::text, eo.id FROM event_outbox AS eo"
        " ORDER BY eo.txid DESC, eo.id DESC LIMIT 1"
    ).fetchone()
    if last is None:
        read_ids(conn, consumer, 1)
    else:
        advance(conn, consumer, last[0], last[1])
    return consumer


def cursor(conn: psycopg.Connection[Any], consumer: str) -> tuple[str, int, int]:
    row = conn.execute(
        "SELECT last_txid::text, last_id, events_read FROM event_outbox_cursor WHERE consumer = %s",
        (consumer,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def mark(conn: psycopg.Connection[Any], collection: str = "tests", key: str | None = None) -> int:
    answer = scalar(
        conn,
        "SELECT iu_core.fn_iu_op_mark(%s, %s, 'alice', 'ref://x')",
        (collection, key or unique("key-")),
    )
    return int(answer["record_id"])


def op(conn: psycopg.Connection[Any], name: str, record_id: int, actor: str = "bob") -> Any:
    return scalar(conn, f"SELECT iu_core.fn_iu_op_{name}(%s, %s)", (record_id, actor))


def events_of_record(conn: psycopg.Connection[Any], record_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT event_type FROM event_outbox WHERE payload @> %s ORDER BY id",
        (Jsonb({"record_id": record_id}),),
    ).fetchall()
    return [row[0] for row in rows]


def status_of(conn: psycopg.Connection[Any], record_id: int) -> str:
    return str(
        scalar(conn, "SELECT status FROM iu_core.iu_staging_record WHERE id = %s", (record_id,))
    )


def new_worker(conn: psycopg.Connection[Any], sink: str = "table") -> str:
    """A new outbound worker whose cursor starts after every event committed so far."""
    name = unique("test_")
    consumer = consumer_at_end(conn, prefix="outbound.")
    conn.execute(
        "INSERT INTO iu_outbound_worker (name, consumer, sink) VALUES (%s, %s, %s)",
        (name, consumer, sink),
    )
    return name


def tick(conn: psycopg.Connection[Any], name: str, batch: int | None = None) -> Any:
    return scalar(conn, "SELECT fn_iu_outbound_tick(name => %s, batch => %s)", (name, batch))


def delivered_ids(conn: psycopg.Connection[Any], worker: str) -> list[int]:
    rows = conn.execute(
        "SELECT event_id FROM iu_outbound_delivery WHERE worker = %s ORDER BY id", (worker,)
    ).fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- dot_config


def test_config_get_returns_the_value_and_null_for_a_missing_key(db) -> None:
    db.execute("SELECT fn_config_set('tests.setting.limit', '42')")

    assert scalar(db, "SELECT fn_config_get('tests.setting.limit')") == 42
    assert scalar(db, "SELECT fn_config_get('tests.setting.missing')") is None


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(True, True), (False, False), ("true", False), (1, False), ({"on": True}, False)],
    ids=["true", "false", "string-true", "one", "object"],
)
def test_config_enabled_is_true_only_for_the_jsonb_value_true(db, value, enabled) -> None:
    db.execute("SELECT fn_config_set('tests.flag.enabled', %s)", (Jsonb(value),))

    assert scalar(db, "SELECT fn_config_enabled('tests.flag.enabled')") is enabled


def test_config_enabled_is_false_for_a_missing_key(db) -> None:
    assert scalar(db, "SELECT fn_config_enabled('tests.flag.never_set')") is False


def test_config_set_upserts_and_answers_previous_and_new_value(db) -> None:
    first = scalar(db, "SELECT fn_config_set('tests.flag.enabled', 'true')")
    second = scalar(db, "SELECT fn_config_set('tests.flag.enabled', 'false')")

    assert first == {"ok": True, "key": "tests.flag.enabled", "previous": None, "value": True}
    assert second == {"ok": True, "key": "tests.flag.enabled", "previous": True, "value": False}
    assert scalar(db, "SELECT count(*) FROM dot_config WHERE key = 'tests.flag.enabled'") == 1


def test_config_set_records_who_and_when(db) -> None:
    db.execute("SELECT fn_config_set('tests.flag.a', 'true', updated_by => 'ops-alice')")
    db.execute("SELECT fn_config_set('tests.flag.b', 'true')")

    rows = dict(
        db.execute(
            "SELECT key, updated_by FROM dot_config WHERE key IN ('tests.flag.a', 'tests.flag.b')"
            " AND updated_at = now()"
        ).fetchall()
    )
    assert rows == {"tests.flag.a": "ops-alice", "tests.flag.b": scalar(db, "SELECT current_user")}


def test_config_set_keeps_the_description_unless_one_is_given(db) -> None:
    db.execute("SELECT fn_config_set('tests.flag.x', 'true', description => 'what x does')")
    db.execute("SELECT fn_config_set('tests.flag.x', 'false')")
    kept = scalar(db, "SELECT description FROM dot_config WHERE key = 'tests.flag.x'")
    db.execute("SELECT fn_config_set('tests.flag.x', 'true', description => 'new words')")

    assert kept == "what x does"
    assert (
        scalar(db, "SELECT description FROM dot_config WHERE key = 'tests.flag.x'") == "new words"
    )


@pytest.mark.parametrize("key", ["nodots", "Upper.case", "a..b", "a.b.", "", "spa ce.x", None])
def test_config_set_rejects_a_bad_key_with_sqlstate_22023(db, key) -> None:
    with pytest.raises(errors.InvalidParameterValue) as raised:
        db.execute("SELECT fn_config_set(%s, 'true')", (key,))

    assert raised.value.sqlstate == "22023"
    assert raised.value.diag.message_hint is not None


def test_config_set_rejects_a_null_value(db) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT fn_config_set('tests.flag.x', NULL)")


def test_only_the_admin_role_may_set_config_while_worker_and_reader_may_read_it(db) -> None:
    db.execute("SET LOCAL ROLE conveyor_worker")
    assert scalar(db, "SELECT fn_config_enabled('iu.auto_instantiate.legacy_enabled')") is True
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("SELECT fn_config_set('tests.flag.x', 'true')")


# --------------------------------------------------------------------------- event types


@pytest.mark.parametrize(("separator", "domain"), [(".", "iu"), (".", "staging"), ("/", "system")])
def test_event_type_register_takes_the_domain_before_the_first_dot_or_slash(
    db, separator, domain
) -> None:
    event_type = f"{domain}{separator}{unique('probe_')}.detail"

    answer = scalar(db, "SELECT fn_event_type_register(%s, 'why')", (event_type,))

    assert answer == {"ok": True, "event_type": event_type, "domain": domain, "already": False}
    assert (
        scalar(db, "SELECT domain FROM event_type_registry WHERE event_type = %s", (event_type,))
        == domain
    )


def test_event_type_register_is_idempotent(db) -> None:
    db.execute("SELECT fn_event_type_register('tests.thing_happened', 'first words')")
    again = scalar(db, "SELECT fn_event_type_register('tests.thing_happened')")

    assert again == {
        "ok": True,
        "event_type": "tests.thing_happened",
        "domain": "tests",
        "already": True,
    }
    assert (
        scalar(
            db,
            "SELECT description FROM event_type_registry WHERE event_type = 'tests.thing_happened'",
        )
        == "first words"
    )


@pytest.mark.parametrize("event_type", ["nodomain", "Tests.upper", ".leading", "a b.c", None])
def test_event_type_register_rejects_a_malformed_type(db, event_type) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT fn_event_type_register(%s)", (event_type,))


# --------------------------------------------------------------------------- emit


def test_emit_returns_the_event_id_stamped_with_the_emitting_transaction(db) -> None:
    event_id = emit(db, payload={"record_id": 7})

    row = db.execute(
        "SELECT event_type, payload, source, txid = pg_current_xact_id() FROM event_outbox"
        " WHERE id = %s",
        (event_id,),
    ).fetchone()
    assert row == ("staging.record_marked", {"record_id": 7}, "tests", True)


def test_emit_rejects_an_unregistered_type_with_a_hint_to_register_it(db) -> None:
    with pytest.raises(errors.InvalidParameterValue) as raised:
        emit(db, event_type="tests.never_registered")

    assert "fn_event_type_register" in (raised.value.diag.message_hint or "")


@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "3", "null"])
def test_emit_rejects_a_payload_that_is_not_an_object(db, payload) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT fn_outbox_emit('staging.record_marked', %s::jsonb)", (payload,))


def test_emit_with_a_null_payload_stores_an_empty_object(db) -> None:
    event_id = scalar(db, "SELECT fn_outbox_emit('staging.record_marked', NULL)")

    assert scalar(db, "SELECT payload FROM event_outbox WHERE id = %s", (event_id,)) == {}


# --------------------------------------------------------------------------- read / advance


def test_read_creates_the_cursor_at_the_beginning_on_first_use(db) -> None:
    read_ids(db, "tests.fresh")

    assert cursor(db, "tests.fresh") == ("0", 0, 0)


def test_read_never_returns_events_of_the_reading_transaction(connect) -> None:
    conn = connect(autocommit=False)
    event_id = emit(conn)

    assert event_id not in read_ids(conn, unique("test."), batch=10000)


def test_read_returns_committed_events_in_transaction_order_not_id_order(connect) -> None:
    reader = connect()
    consumer = consumer_at_end(reader)
    early = connect(autocommit=False)
    early.execute("SELECT pg_current_xact_id()")  # takes its transaction id first
    late_id = emit(connect())  # a later transaction, committed at once: the smaller id
    early_id = emit(early)
    early.commit()

    assert late_id < early_id
    wait_until(lambda: readable(reader, [late_id, early_id]))
    assert read_ids(reader, consumer) == [early_id, late_id]


def test_read_does_not_move_the_cursor(connect) -> None:
    conn = connect()
    consumer = consumer_at_end(conn)
    event_id = emit(conn)
    wait_until(lambda: readable(conn, [event_id]))

    assert read_ids(conn, consumer) == [event_id]
    assert read_ids(conn, consumer) == [event_id]


def test_read_honours_the_batch_size(connect) -> None:
    conn = connect()
    consumer = consumer_at_end(conn)
    ids = [emit(conn) for _ in range(3)]
    wait_until(lambda: readable(conn, ids))

    assert read_ids(conn, consumer, batch=2) == ids[:2]


def test_a_late_committing_transaction_is_never_skipped(connect) -> None:
    reader = connect()
    consumer = consumer_at_end(reader)
    slow = connect(autocommit=False)
    slow_id = emit(slow, payload={"who": "slow"})  # begins first, commits last
    fast_id = emit(connect(), payload={"who": "fast"})  # commits at once

    assert read_ids(reader, consumer) == []  # fast's event waits behind the open transaction
    slow.commit()
    wait_until(lambda: readable(reader, [slow_id, fast_id]))
    rows = read_rows(reader, consumer)
    assert [row[0] for row in rows] == [slow_id, fast_id]
    advance(reader, consumer, rows[-1][1], rows[-1][0])
    assert read_ids(reader, consumer) == []


def test_an_open_transaction_in_another_database_does_not_hold_back_delivery(
    connect, empty_dsn
) -> None:
    elsewhere = psycopg.connect(empty_dsn, autocommit=False)
    try:
        elsewhere.execute("SELECT pg_current_xact_id()")  # holds an xid, idle in transaction
        conn = connect()
        consumer = consumer_at_end(conn)
        event_id = emit(conn)

        wait_until(lambda: readable(conn, [event_id]))
        assert read_ids(conn, consumer) == [event_id]
    finally:
        elsewhere.close()


def test_the_horizon_never_passes_a_running_transaction_of_this_database(connect) -> None:
    running = connect(autocommit=False)
    own = scalar(running, "SELECT pg_current_xact_id()::text")
    observer = connect()

    assert scalar(running, "SELECT fn_outbox_horizon() <= pg_current_xact_id()") is True
    assert scalar(observer, "SELECT fn_outbox_horizon() <= %s::xid8", (own,)) is True
    running.commit()
    wait_until(lambda: scalar(observer, "SELECT fn_outbox_horizon() > %s::xid8", (own,)))


@pytest.mark.slow
def test_concurrent_late_commits_are_each_read_exactly_once(connect, empty_dsn) -> None:
    """Writers take their xid early and commit late (some roll back) while another database
    churns; a reader that reads and advances must see every committed event exactly once."""
    reader = connect()
    consumer = consumer_at_end(reader)
    committed: list[int] = []
    lock = threading.Lock()
    rng = random.Random(7)

    def writer(conn: psycopg.Connection[Any], rounds: int) -> None:
        for _ in range(rounds):
            conn.execute("SELECT pg_current_xact_id(), pg_sleep(%s)", (rng.random() / 100,))
            ids = [emit(conn) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.1:
                conn.rollback()
                continue
            conn.commit()
            with lock:
                committed.extend(ids)

    def churn(conn: psycopg.Connection[Any], done: threading.Event) -> None:
        while not done.is_set():
            conn.execute("SELECT pg_current_xact_id(), pg_sleep(0.002)")
            conn.commit()

    done = threading.Event()
    other_db = psycopg.connect(empty_dsn, autocommit=False)
    writers = [
        threading.Thread(target=writer, args=(connect(autocommit=False), 40)) for _ in range(3)
    ]
    churner = threading.Thread(target=churn, args=(other_db, done))
    seen: list[int] = []
    try:
        churner.start()
        for thread in writers:
            thread.start()

        def drained() -> bool:
            rows = read_rows(reader, consumer, batch=50)
            if rows:
                seen.extend(row[0] for row in rows)
                advance(reader, consumer, rows[-1][1], rows[-1][0])
            return not any(t.is_alive() for t in writers) and set(committed) <= set(seen)

        wait_until(drained, timeout=60, interval=0.01)
    finally:
        done.set()
        churner.join(timeout=10)
        other_db.close()

    assert sorted(seen) == sorted(committed)


def test_advance_refuses_a_position_behind_a_transaction_still_running_here(connect) -> None:
    reader = connect()
    open_tx = connect(autocommit=False)
    emit(open_tx)  # holds an older xid, uncommitted
    later = emit(connect())

    with pytest.raises(errors.InvalidParameterValue) as raised:
        advance(reader, unique("test."), txid_of(reader, later), later)

    assert "still running" in (raised.value.diag.message_primary or "")
    open_tx.rollback()


def test_consumers_read_independently(connect) -> None:
    conn = connect()
    first = consumer_at_end(conn)
    second = unique("test.")
    advance(conn, second, *cursor(conn, first)[:2])
    event_id = emit(conn)
    wait_until(lambda: readable(conn, [event_id]))

    advance(conn, first, txid_of(conn, event_id), event_id)

    assert read_ids(conn, first) == []
    assert read_ids(conn, second) == [event_id]


def test_advance_moves_forward_and_counts_the_events_passed(connect) -> None:
    conn = connect()
    consumer = consumer_at_end(conn)
    before = cursor(conn, consumer)
    ids = [emit(conn) for _ in range(3)]
    wait_until(lambda: readable(conn, ids))

    answer = advance(conn, consumer, txid_of(conn, ids[-1]), ids[-1])

    assert answer == {
        "ok": True,
        "consumer": consumer,
        "moved": True,
        "last_txid": txid_of(conn, ids[-1]),
        "last_id": ids[-1],
        "events": 3,
    }
    assert cursor(conn, consumer) == (txid_of(conn, ids[-1]), ids[-1], before[2] + 3)


def test_advance_never_moves_the_cursor_backwards(connect) -> None:
    conn = connect()
    consumer = consumer_at_end(conn)
    ids = [emit(conn) for _ in range(2)]
    wait_until(lambda: readable(conn, ids))
    advance(conn, consumer, txid_of(conn, ids[1]), ids[1])

    stale = advance(conn, consumer, txid_of(conn, ids[0]), ids[0])
    repeated = advance(conn, consumer, txid_of(conn, ids[1]), ids[1])

    assert stale["moved"] is False and stale["last_id"] == ids[1] and stale["events"] == 0
    assert repeated["moved"] is False
    assert cursor(conn, consumer)[:2] == (txid_of(conn, ids[1]), ids[1])
    assert read_ids(conn, consumer) == []


def test_advance_refuses_the_position_of_an_event_still_being_committed(db) -> None:
    event_id = emit(db)  # this transaction is still running

    with pytest.raises(errors.InvalidParameterValue) as raised:
        advance(db, "tests.c", txid_of(db, event_id), event_id)

    assert "not readable yet" in (raised.value.diag.message_primary or "")


@pytest.mark.parametrize(
    ("consumer", "batch"), [("has space", 10), ("", 10), (None, 10), ("ok", 0), ("ok", 10001)]
)
def test_read_rejects_a_bad_consumer_or_batch(db, consumer, batch) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT * FROM fn_outbox_read(%s, %s)", (consumer, batch))


def test_cursor_lag_view_counts_the_readable_events_after_each_cursor(connect) -> None:
    conn = connect()
    consumer = consumer_at_end(conn)
    ids = [emit(conn) for _ in range(2)]
    wait_until(lambda: readable(conn, ids))

    lag = conn.execute(
        "SELECT lag_events, oldest_unread_at IS NOT NULL FROM v_event_outbox_cursor_lag"
        " WHERE consumer = %s",
        (consumer,),
    ).fetchone()
    advance(conn, consumer, txid_of(conn, ids[-1]), ids[-1])

    assert lag == (2, True)
    assert (
        scalar(
            conn,
            "SELECT lag_events FROM v_event_outbox_cursor_lag WHERE consumer = %s",
            (consumer,),
        )
        == 0
    )


# --------------------------------------------------------------------------- staging


def test_mark_stages_a_record_and_emits_record_marked(db) -> None:
    answer = scalar(db, "SELECT iu_core.fn_iu_op_mark('docs', 'd-1', 'alice', 's3://b/d-1')")

    record_id = answer["record_id"]
    assert answer == {
        "ok": True,
        "already": False,
        "op": "mark",
        "record_id": record_id,
        "collection": "docs",
        "record_key": "d-1",
        "status": "marked",
        "event_id": answer["event_id"],
    }
    row = db.execute(
        "SELECT status, content_ref, marked_by FROM iu_core.iu_staging_record WHERE id = %s",
        (record_id,),
    ).fetchone()
    assert row == ("marked", "s3://b/d-1", "alice")
    assert scalar(db, "SELECT payload FROM event_outbox WHERE id = %s", (answer["event_id"],)) == {
        "record_id": record_id,
        "collection": "docs",
        "record_key": "d-1",
        "actor": "alice",
    }


def test_marking_a_staged_record_again_is_an_idempotent_ok(db) -> None:
    record_id = mark(db, key="same")
    again = scalar(db, "SELECT iu_core.fn_iu_op_mark('tests', 'same', 'carol')")

    assert again == {
        "ok": True,
        "already": True,
        "op": "mark",
        "record_id": record_id,
        "status": "marked",
    }
    assert events_of_record(db, record_id) == ["staging.record_marked"]


def test_the_full_cycle_moves_one_step_at_a_time_and_emits_the_five_events(db) -> None:
    record_id = mark(db)
    answers = [op(db, name, record_id) for name in ("approve", "cut", "verify_cut", "cleanup")]

    assert [a["status"] for a in answers] == ["approved", "cut", "verified", "cleaned"]
    assert all(a["ok"] and a["already"] is False and a["event_id"] for a in answers)
    assert events_of_record(db, record_id) == STAGING_TYPES
    stamps = db.execute(
        """SELECT approved_by, cut_by, verified_by, cleaned_by,
                  approved_at IS NOT NULL AND cut_at IS NOT NULL AND verified_at IS NOT NULL
                  AND cleaned_at IS NOT NULL
             FROM iu_core.iu_staging_record WHERE id = %s""",
        (record_id,),
    ).fetchone()
    assert stamps == ("bob", "bob", "bob", "bob", True)


def test_cut_records_its_target(db) -> None:
    record_id = mark(db)
    op(db, "approve", record_id)
    db.execute("SELECT iu_core.fn_iu_op_cut(%s, 'bob', cut_target => 'archive://1')", (record_id,))

    assert (
        scalar(db, "SELECT cut_target FROM iu_core.iu_staging_record WHERE id = %s", (record_id,))
        == "archive://1"
    )


@pytest.mark.parametrize(
    ("done", "attempt", "status"),
    [
        ([], "cut", "marked"),
        ([], "verify_cut", "marked"),
        ([], "cleanup", "marked"),
        (["approve"], "verify_cut", "approved"),
        (["approve"], "cleanup", "approved"),
        (["approve", "cut"], "cleanup", "cut"),
    ],
)
def test_an_operation_out_of_order_is_refused_and_changes_nothing(
    db, done, attempt, status
) -> None:
    record_id = mark(db)
    for name in done:
        op(db, name, record_id)
    events_before = events_of_record(db, record_id)

    answer = op(db, attempt, record_id)

    assert answer["refused"] is True
    assert answer["reason"] == "invalid_transition"
    assert answer["status"] == status
    assert answer["record_id"] == record_id
    assert status_of(db, record_id) == status
    assert events_of_record(db, record_id) == events_before


@pytest.mark.parametrize("repeat", ["approve", "cut", "verify_cut", "cleanup"])
def test_repeating_an_operation_past_its_step_answers_already_and_emits_nothing(db, repeat) -> None:
    record_id = mark(db)
    for name in ("approve", "cut", "verify_cut", "cleanup"):
        op(db, name, record_id)

    answer = op(db, repeat, record_id, actor="mallory")

    assert answer == {
        "ok": True,
        "already": True,
        "op": repeat,
        "record_id": record_id,
        "status": "cleaned",
    }
    assert events_of_record(db, record_id) == STAGING_TYPES


def test_an_operation_on_a_missing_record_is_refused(db) -> None:
    answer = op(db, "approve", -1)

    assert answer == {
        "refused": True,
        "reason": "record_not_found",
        "op": "approve",
        "record_id": -1,
    }


@pytest.mark.parametrize("actor", [None, "", "   "])
def test_staging_operations_require_an_actor(db, actor) -> None:
    record_id = mark(db)

    with pytest.raises(errors.InvalidParameterValue), db.transaction():
        op(db, "approve", record_id, actor=actor)
    with pytest.raises(errors.InvalidParameterValue), db.transaction():
        db.execute("SELECT iu_core.fn_iu_op_mark('tests', 'k', %s)", (actor,))
    assert status_of(db, record_id) == "marked"


def test_a_disabled_route_runs_the_operation_without_emitting(db) -> None:
    db.execute(
        "UPDATE iu_sql_event_route SET enabled = false WHERE route = 'iu_staging_record.approve'"
    )
    record_id = mark(db)

    answer = op(db, "approve", record_id)

    assert answer["ok"] is True and answer["event_id"] is None
    assert status_of(db, record_id) == "approved"
    assert events_of_record(db, record_id) == ["staging.record_marked"]


def test_staging_view_shows_each_records_status_and_next_operation(db) -> None:
    record_id = mark(db)
    op(db, "approve", record_id)

    row = db.execute(
        "SELECT status, next_op, approved_by, last_changed_at = approved_at"
        " FROM v_iu_staging_record WHERE id = %s",
        (record_id,),
    ).fetchone()
    assert row == ("approved", "cut", "bob", True)


def test_staging_row_stamps_must_agree_with_its_status(db) -> None:
    record_id = mark(db)

    with pytest.raises(errors.CheckViolation):
        db.execute(
            "UPDATE iu_core.iu_staging_record SET status = 'cut' WHERE id = %s", (record_id,)
        )


def test_the_worker_role_runs_staging_operations_without_table_privileges(db) -> None:
    db.execute("SET LOCAL ROLE conveyor_worker")
    record_id = mark(db)

    assert op(db, "approve", record_id)["status"] == "approved"
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("SELECT * FROM iu_core.iu_staging_record")


# --------------------------------------------------------------------------- legacy consumer


def composed(conn: psycopg.Connection[Any], template: str, key: str, **extra: Any) -> int:
    payload = {"template": template, "instance_key": key, "params": {"size": 3}, **extra}
    return emit(conn, event_type=AUTO_COMPOSED, payload=payload)


def instances_of(conn: psycopg.Connection[Any], template: str) -> list[Any]:
    return conn.execute(
        "SELECT instance_key, params, source_event_id, created_by FROM iu_template_instance"
        " WHERE template = %s ORDER BY id",
        (template,),
    ).fetchall()


def test_auto_instantiate_from_event_creates_the_instance(db) -> None:
    event_id = composed(db, "tests.tpl", "k1")

    answer = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (event_id,))

    assert answer["ok"] is True and answer["already"] is False
    assert instances_of(db, "tests.tpl") == [("k1", {"size": 3}, event_id, "tests")]


def test_auto_instantiate_from_the_same_event_twice_creates_one_instance(db) -> None:
    event_id = composed(db, "tests.tpl", "k1")
    first = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (event_id,))

    second = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (event_id,))

    assert second == {
        "ok": True,
        "already": True,
        "event_id": event_id,
        "instance_id": first["instance_id"],
        "source_event_id": event_id,
    }
    assert len(instances_of(db, "tests.tpl")) == 1


def test_auto_instantiate_of_an_instance_another_event_composed_is_already(db) -> None:
    first = composed(db, "tests.tpl", "k1")
    second = composed(db, "tests.tpl", "k1")
    db.execute("SELECT fn_iu_auto_instantiate_from_event(%s)", (first,))

    answer = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (second,))

    assert answer["already"] is True and answer["source_event_id"] == first
    assert len(instances_of(db, "tests.tpl")) == 1


def test_auto_instantiate_refuses_an_event_of_another_type(db) -> None:
    event_id = emit(db)

    answer = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (event_id,))

    assert answer == {
        "refused": True,
        "reason": "wrong_event_type",
        "event_id": event_id,
        "event_type": "staging.record_marked",
    }


def test_auto_instantiate_refuses_a_missing_event(db) -> None:
    answer = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(-5)")

    assert answer == {"refused": True, "reason": "event_not_found", "event_id": -5}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"instance_key": "k"}, "template"),
        ({"template": "", "instance_key": "k"}, "template"),
        ({"template": "t", "instance_key": 5}, "instance_key"),
        ({"template": "t", "instance_key": "k", "params": [1]}, "params"),
    ],
)
def test_auto_instantiate_refuses_an_invalid_payload_naming_the_field(db, payload, field) -> None:
    event_id = emit(db, event_type=AUTO_COMPOSED, payload=payload)

    answer = scalar(db, "SELECT fn_iu_auto_instantiate_from_event(%s)", (event_id,))

    assert answer == {
        "refused": True,
        "reason": "invalid_payload",
        "event_id": event_id,
        "field": field,
    }


def test_legacy_run_creates_exactly_one_instance_per_event_when_run_twice(connect) -> None:
    conn = connect()
    template = unique("tests.tpl.")
    ids = [composed(conn, template, "a"), emit(conn), composed(conn, template, "b")]
    wait_until(lambda: readable(conn, ids))

    first = scalar(conn, "SELECT fn_iu_auto_instantiate_run(batch => 10000)")
    second = scalar(conn, "SELECT fn_iu_auto_instantiate_run(batch => 10000)")

    assert first["ok"] is True and first["created"] == 2
    assert second["read"] == 0 and second["created"] == 0
    assert [row[2] for row in instances_of(conn, template)] == [ids[0], ids[2]]
    assert cursor(conn, "legacy.auto_instantiate")[1] >= ids[2]


def test_legacy_run_steps_over_an_invalid_event_and_reports_it(connect) -> None:
    conn = connect()
    template = unique("tests.tpl.")
    bad = emit(conn, event_type=AUTO_COMPOSED, payload={"template": template})
    good = composed(conn, template, "ok")
    wait_until(lambda: readable(conn, [bad, good]))

    answer = scalar(conn, "SELECT fn_iu_auto_instantiate_run(batch => 10000)")

    assert answer["invalid"] == 1 and answer["invalid_event_ids"] == [bad]
    assert [row[2] for row in instances_of(conn, template)] == [good]


def test_legacy_run_is_refused_and_changes_nothing_while_its_flag_is_off(db) -> None:
    set_flag(db, "iu.auto_instantiate.legacy_enabled", False)
    before = cursor(db, "legacy.auto_instantiate")

    answer = scalar(db, "SELECT fn_iu_auto_instantiate_run()")

    assert answer == {
        "refused": True,
        "reason": "auto_instantiate_legacy_disabled",
        "flag": "iu.auto_instantiate.legacy_enabled",
    }
    assert cursor(db, "legacy.auto_instantiate") == before


def test_the_legacy_flag_is_on_by_default(db) -> None:
    assert scalar(db, "SELECT fn_config_enabled('iu.auto_instantiate.legacy_enabled')") is True


# --------------------------------------------------------------------------- outbound worker


def test_the_default_outbound_worker_is_seeded(db) -> None:
    row = db.execute(
        "SELECT consumer, sink, cadence_seconds, enabled FROM iu_outbound_worker"
        " WHERE name = 'iu_outbound_default'"
    ).fetchone()

    assert row == ("outbound.iu_outbound_default", "table", 60, True)


def test_tick_delivers_to_the_table_sink_and_moves_the_cursor(connect) -> None:
    conn = connect()
    worker = new_worker(conn)
    ids = [emit(conn, payload={"n": n}) for n in range(3)]
    wait_until(lambda: readable(conn, ids))

    answer = tick(conn, worker)
    again = tick(conn, worker)

    assert answer["ok"] is True and answer["sink"] == "table" and answer["delivered"] == 3
    assert "events" not in answer
    assert again["delivered"] == 0
    rows = conn.execute(
        "SELECT event_id, event_type, payload FROM iu_outbound_delivery WHERE worker = %s"
        " ORDER BY id",
        (worker,),
    ).fetchall()
    assert rows == [(ids[n], "staging.record_marked", {"n": n}) for n in range(3)]


def test_tick_of_a_log_sink_returns_the_events_instead(connect) -> None:
    conn = connect()
    worker = new_worker(conn, sink="log")
    event_id = emit(conn, payload={"n": 1})
    wait_until(lambda: readable(conn, [event_id]))

    answer = tick(conn, worker)

    assert answer["delivered"] == 1
    assert [(e["id"], e["event_type"], e["payload"]) for e in answer["events"]] == [
        (event_id, "staging.record_marked", {"n": 1})
    ]
    assert delivered_ids(conn, worker) == []


def test_tick_stamps_last_run_at_with_clock_time_even_with_nothing_to_deliver(connect) -> None:
    conn = connect(autocommit=False)
    worker = new_worker(connect())

    first = tick(conn, worker)
    second = tick(conn, worker)  # same transaction: now() would not move, the clock does

    stamps = conn.execute(
        "SELECT %s::timestamptz < %s::timestamptz, last_run_at = %s::timestamptz"
        " FROM iu_outbound_worker WHERE name = %s",
        (first["last_run_at"], second["last_run_at"], second["last_run_at"], worker),
    ).fetchone()
    assert (first["delivered"], second["delivered"]) == (0, 0)
    assert stamps == (True, True)


def test_tick_of_a_disabled_worker_is_refused_and_changes_nothing(connect) -> None:
    conn = connect()
    worker = new_worker(conn)
    conn.execute("UPDATE iu_outbound_worker SET enabled = false WHERE name = %s", (worker,))
    event_id = emit(conn)
    wait_until(lambda: readable(conn, [event_id]))

    answer = tick(conn, worker)

    assert answer == {"refused": True, "reason": "outbound_worker_disabled", "worker": worker}
    assert (
        scalar(conn, "SELECT last_run_at FROM iu_outbound_worker WHERE name = %s", (worker,))
        is None
    )
    assert delivered_ids(conn, worker) == []


def test_tick_of_an_unknown_worker_is_an_error(db) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        tick(db, "no_such_worker")


@pytest.mark.parametrize("sink", ["table", "log"])
def test_two_ticks_at_once_deliver_each_event_once(connect, sink) -> None:
    setup = connect()
    worker = new_worker(setup, sink=sink)
    ids = [emit(setup) for _ in range(4)]
    wait_until(lambda: readable(setup, ids))
    first_conn, second_conn = connect(autocommit=False), connect(autocommit=False)
    answers: dict[str, Any] = {}

    answers["first"] = tick(first_conn, worker)  # holds the worker row until it commits

    def second_tick() -> None:
        answers["second"] = tick(second_conn, worker)
        second_conn.commit()

    thread = threading.Thread(target=second_tick)
    thread.start()
    pid = second_conn.info.backend_pid
    wait_until(
        lambda: scalar(
            setup, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
    )
    first_conn.commit()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert answers["first"]["delivered"] == 4
    assert answers["second"]["delivered"] == 0
    if sink == "table":
        assert delivered_ids(setup, worker) == ids
    else:
        assert [e["id"] for e in answers["first"]["events"]] == ids
        assert answers["second"]["events"] == []


def test_outbound_worker_view_shows_liveness_and_lag(connect) -> None:
    conn = connect()
    worker = new_worker(conn)
    tick(conn, worker)
    event_id = emit(conn)
    wait_until(lambda: readable(conn, [event_id]))

    row = conn.execute(
        "SELECT last_run_at IS NOT NULL, lag_events FROM v_iu_outbound_worker WHERE name = %s",
        (worker,),
    ).fetchone()

    assert row == (True, 1)


# --------------------------------------------------------------------------- routes


def test_route_domain_check_rejects_a_domain_outside_iu_staging_system(db) -> None:
    with pytest.raises(errors.CheckViolation) as raised:
        db.execute(
            """INSERT INTO iu_sql_event_route
                   (route, source_table, operation, target_event_type, target_event_domain)
               VALUES ('tests.customer', 'x.y', 'INSERT', 'customer.message_received',
                       'customer')"""
        )

    assert raised.value.diag.constraint_name == "iu_sql_event_route_target_event_domain_check"


@pytest.mark.parametrize(
    "event_type", ["iu.template.instance_auto_composed", "staging.record_marked", "system/probe"]
)
def test_route_domain_check_accepts_iu_staging_and_system(db, event_type) -> None:
    db.execute("SELECT fn_event_type_register(%s)", (event_type,))
    domain = event_type.replace("/", ".").split(".")[0]

    route = unique("tests.")
    db.execute(
        """INSERT INTO iu_sql_event_route
               (route, source_table, operation, target_event_type, target_event_domain)
           VALUES (%s, 'x.y', 'UPDATE', %s, %s)""",
        (route, event_type, domain),
    )

    stored = db.execute(
        "SELECT target_event_type, target_event_domain FROM iu_sql_event_route WHERE route = %s",
        (route,),
    ).fetchall()
    assert stored == [(event_type, domain)]
    assert domain in {"iu", "staging", "system"}


def test_the_staging_routes_are_seeded_enabled(db) -> None:
    rows = db.execute(
        "SELECT route, operation, target_event_type FROM iu_sql_event_route"
        " WHERE enabled AND source_table = 'iu_core.iu_staging_record' ORDER BY route"
    ).fetchall()

    assert rows == [
        ("iu_staging_record.approve", "UPDATE", "staging.record_approved"),
        ("iu_staging_record.cleanup", "UPDATE", "staging.record_cleaned"),
        ("iu_staging_record.cut", "UPDATE", "staging.record_consumed"),
        ("iu_staging_record.mark", "INSERT", "staging.record_marked"),
        ("iu_staging_record.verify_cut", "UPDATE", "staging.record_verified"),
    ]
