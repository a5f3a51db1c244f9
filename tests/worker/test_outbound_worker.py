"""conveyor.outbound: the thin Python loop around fn_iu_outbound_tick, on real PostgreSQL."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor import outbound
from conveyor.errors import Disabled, InvalidInput
from conveyor.types import JsonObject
from helpers import scalar, wait_until

Connect = Callable[..., psycopg.Connection[Any]]


def new_worker(conn: psycopg.Connection[Any], sink: str) -> str:
    """A new outbound worker whose cursor starts after every event committed so far."""
    name = f"py_{uuid.uuid4().hex[:10]}"
    consumer = f"outbound.{name}"
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
    if last is not None:
        conn.execute("SELECT fn_outbox_advance(%s, %s::xid8, %s)", (consumer, last[0], last[1]))
    conn.execute(
        "INSERT INTO iu_outbound_worker (name, consumer, sink) VALUES (%s, %s, %s)",
        (name, consumer, sink),
    )
    return name


def emit_readable(conn: psycopg.Connection[Any], count: int) -> list[int]:
    """Emit *count* committed events and wait until the outbox lets readers see them."""
    ids = [
        int(scalar(conn, "SELECT fn_outbox_emit('staging.record_marked', %s)", (Jsonb({"n": n}),)))
        for n in range(count)
    ]
    wait_until(
        lambda: scalar(
            conn,
            """SELECT count(*) = %s FROM event_outbox AS eo
                WHERE eo.id = ANY(%s) AND eo.txid < fn_outbox_horizon()""",
            (len(ids), ids),
        )
    )
    return ids


def deliveries(conn: psycopg.Connection[Any], worker: str) -> list[int]:
    rows = conn.execute(
        "SELECT event_id FROM iu_outbound_delivery WHERE worker = %s ORDER BY event_id", (worker,)
    ).fetchall()
    return [row[0] for row in rows]


def test_tick_returns_the_answer_of_the_sql_tick(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "table")
    ids = emit_readable(conn, 2)

    answer = outbound.tick(conn, worker)

    assert answer["ok"] is True
    assert answer["worker"] == worker
    assert answer["delivered"] == 2
    assert deliveries(conn, worker) == ids


def test_tick_passes_the_batch_size(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "table")
    ids = emit_readable(conn, 3)

    assert outbound.tick(conn, worker, batch=2)["delivered"] == 2
    assert deliveries(conn, worker) == ids[:2]


def test_tick_of_a_disabled_worker_raises_disabled(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "table")
    conn.execute("UPDATE iu_outbound_worker SET enabled = false WHERE name = %s", (worker,))

    with pytest.raises(Disabled) as raised:
        outbound.tick(conn, worker)

    assert raised.value.reason == "outbound_worker_disabled"


def test_tick_of_an_unknown_worker_raises_invalid_input(connect: Connect) -> None:
    with pytest.raises(InvalidInput, match="no outbound worker"):
        outbound.tick(connect(), "no_such_worker")


def test_run_once_hands_log_sink_events_to_on_events_and_commits(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "log")
    ids = emit_readable(conn, 2)
    seen: list[JsonObject] = []

    ticks = outbound.run(conn, worker, interval=60, once=True, on_events=seen.extend)

    assert ticks == 1
    assert [event["id"] for event in seen] == ids
    assert [event["payload"] for event in seen] == [{"n": 0}, {"n": 1}]
    assert outbound.tick(connect(), worker)["delivered"] == 0  # the cursor move was committed


def test_run_rolls_the_tick_back_when_on_events_fails_so_events_come_again(
    connect: Connect,
) -> None:
    conn = connect()
    worker = new_worker(conn, "log")
    ids = emit_readable(conn, 1)

    def fail(events: list[JsonObject]) -> None:
        raise RuntimeError("log sink unavailable")

    with pytest.raises(RuntimeError):
        outbound.run(conn, worker, interval=60, once=True, on_events=fail)
    again = outbound.tick(conn, worker)

    assert [event["id"] for event in again["events"]] == ids


def test_run_logs_log_sink_events_by_id_and_type_by_default(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connect()
    worker = new_worker(conn, "log")
    ids = emit_readable(conn, 1)

    with caplog.at_level(logging.INFO, logger="conveyor.outbound"):
        outbound.run(conn, worker, interval=60, once=True)

    assert any(f"id={ids[0]}" in record.getMessage() for record in caplog.records)
    assert not any('"n"' in record.getMessage() for record in caplog.records)


def test_run_ticks_until_stop_is_set(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "log")
    stop = threading.Event()
    ids = emit_readable(connect(), 1)
    seen: list[JsonObject] = []

    def collect(events: list[JsonObject]) -> None:
        seen.extend(events)
        stop.set()

    ticks = outbound.run(conn, worker, interval=0.01, once=False, stop=stop, on_events=collect)

    assert ticks >= 1
    assert [event["id"] for event in seen] == ids


def test_run_once_with_a_disabled_worker_raises_disabled(connect: Connect) -> None:
    conn = connect()
    worker = new_worker(conn, "table")
    conn.execute("UPDATE iu_outbound_worker SET enabled = false WHERE name = %s", (worker,))

    with pytest.raises(Disabled):
        outbound.run(conn, worker, interval=60, once=True)


def test_run_waits_while_the_worker_is_disabled_and_logs_it_once(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connect()
    worker = new_worker(conn, "table")
    conn.execute("UPDATE iu_outbound_worker SET enabled = false WHERE name = %s", (worker,))
    stop = threading.Event()
    result: dict[str, int] = {}

    def loop() -> None:
        result["ticks"] = outbound.run(conn, worker, interval=0.01, once=False, stop=stop)

    with caplog.at_level(logging.WARNING, logger="conveyor.outbound"):
        thread = threading.Thread(target=loop)
        thread.start()
        wait_until(lambda: any("disabled" in r.getMessage() for r in caplog.records))
        stop.set()
        thread.join(timeout=10)

    assert result == {"ticks": 0}
    assert sum("disabled" in r.getMessage() for r in caplog.records) == 1


def test_run_rejects_a_non_positive_interval(connect: Connect) -> None:
    with pytest.raises(ValueError, match="interval"):
        outbound.run(connect(), "iu_outbound_default", interval=0, once=True)
