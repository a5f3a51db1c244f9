"""v_queue_health's database signals tell the truth in absolute terms: dead rows of job_queue as a
count, the vacuum horizon's age in seconds and in transactions, the queue tables autovacuum will
not visit, and a database_hint judged against the queue.health.* thresholds. Plain SQL on real
PostgreSQL, in a module database of its own (a test switches autovacuum off for job_queue)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from helpers import apply_phases, scalar, set_flag

Conn = psycopg.Connection[Any]
Connect = Callable[..., Conn]


@pytest.fixture(scope="module", autouse=True)
def phase3(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3))
        set_flag(conn, "queue.job_substrate.enabled", True)


@pytest.fixture
def sql(connect: Connect) -> Iterator[Conn]:
    conn = connect()
    yield conn
    for key, value in (
        ("queue.health.xmin_age_warn_seconds", 60),
        ("queue.health.xmin_age_warn_xids", 10000000),
        ("queue.health.dead_tuples_warn", 100000),
    ):
        set_flag(conn, key, value)
    conn.execute("ALTER TABLE conveyor.job_queue RESET (autovacuum_enabled)")


def signals(conn: Conn) -> dict[str, Any]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    cursor = conn.execute("SELECT * FROM fn_queue_health__db_signals()")
    row = cursor.fetchone()
    assert row is not None
    return dict(zip([c.name for c in cursor.description or []], row, strict=True))


def hints(conn: Conn) -> set[str]:
    return set(str(signals(conn)["database_hint"]).split(","))


def test_the_view_carries_every_signal_on_each_row(sql: Conn) -> None:
    scalar(
        sql,
        "SELECT fn_heartbeat_register(component => 'w-signals', component_kind => 'worker',"
        " cadence_seconds => 10, metadata => %s)",
        (Jsonb({}),),
    )
    cursor = sql.execute("SELECT * FROM v_queue_health WHERE component = 'w-signals'")
    columns = {c.name for c in cursor.description or []}
    assert {
        "oldest_xmin_age_seconds",
        "oldest_xmin_age_xids",
        "job_queue_dead_tuples",
        "job_queue_live_tuples",
        "autovacuum_off_tables",
        "notification_queue_usage",
        "database_hint",
    } <= columns
    assert "job_queue_dead_tuple_ratio" not in columns


def test_autovacuum_switched_off_for_job_queue_is_flagged(sql: Conn) -> None:
    before = signals(sql)
    sql.execute("ALTER TABLE conveyor.job_queue SET (autovacuum_enabled = false)")

    after = signals(sql)

    assert "job_queue" in after["autovacuum_off_tables"]
    assert "autovacuum_off" in str(after["database_hint"]).split(",")
    assert "job_queue" not in before["autovacuum_off_tables"] or not scalar(
        sql, "SELECT current_setting('autovacuum')::boolean"
    )


def test_dead_tuples_are_counted_and_judged_against_their_threshold(sql: Conn) -> None:
    sql.execute("ALTER TABLE conveyor.job_queue SET (autovacuum_enabled = false)")  # keep them
    sql.execute(
        "INSERT INTO job_queue (kind, payload, status)"
        " SELECT 'test.dead', '{}', 'queued' FROM generate_series(1, 500)"
    )
    sql.execute("DELETE FROM job_queue WHERE kind = 'test.dead'")
    sql.execute("SELECT pg_stat_force_next_flush()")
    set_flag(sql, "queue.health.dead_tuples_warn", 100)

    found = signals(sql)

    assert found["job_queue_dead_tuples"] >= 500
    assert "dead_tuples_high" in str(found["database_hint"]).split(",")
    set_flag(sql, "queue.health.dead_tuples_warn", 10**9)
    assert "dead_tuples_high" not in hints(sql)


def test_a_transaction_pinning_the_horizon_is_reported_in_seconds_and_transactions(
    sql: Conn, connect: Connect
) -> None:
    holder = connect(autocommit=False)
    holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1")  # takes the snapshot, hence an xmin
    for _ in range(3):  # transactions that commit after it: the horizon falls behind
        sql.execute("SELECT txid_current()")
    assert "xmin_pinned" not in hints(sql)

    set_flag(sql, "queue.health.xmin_age_warn_xids", 2)
    pinned = signals(sql)
    holder.rollback()

    assert pinned["oldest_xmin_age_seconds"] >= 0
    assert pinned["oldest_xmin_age_xids"] >= 3
    assert "xmin_pinned" in str(pinned["database_hint"]).split(",")
    assert "xmin_pinned" not in hints(sql)  # released: the horizon moves on
