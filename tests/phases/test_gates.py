"""Every phase's gate is its health check: it passes on any healthy database, whatever later
phases are applied and whatever traffic is in it, and it fails when its own phase is broken.
Also: every phase goes up → gate → down → catalog identical → up again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.phases import catalog, fingerprint, runner, sqlfile

IMPLEMENTED = tuple(phase for phase in catalog.PHASES if phase.implemented)


def _apply(conn: psycopg.Connection[Any], number: int) -> runner.ApplyResult:
    runner.ratify(conn, number, "tests")
    return runner.apply(conn, number, "tests")


def _earlier(phase: catalog.Phase) -> tuple[catalog.Phase, ...]:
    """The implemented phases numbered below *phase*: an apply order that satisfies it."""
    return tuple(p for p in IMPLEMENTED if p.number < phase.number)


def _gate_rows(conn: psycopg.Connection[Any], phase: catalog.Phase) -> list[tuple[str, bool, str]]:
    """Run gate.sql as psql would, in a savepoint of the caller's open transaction that is
    rolled back (its own BEGIN/ROLLBACK left out), and return its (item, passed, detail) rows."""
    rows: list[tuple[str, bool, str]] = []
    with conn.transaction(force_rollback=True):
        for statement in sqlfile.read(phase.file("gate")).statements():
            if statement.first_word in {"BEGIN", "ROLLBACK"}:
                continue
            cursor = conn.execute(statement.text.encode())
            if cursor.description is not None and len(cursor.description) == 3:
                rows = [(str(r[0]), bool(r[1]), str(r[2])) for r in cursor.fetchall()]
    return rows


def _fill_with_traffic(conn: psycopg.Connection[Any]) -> None:
    """Jobs queued, scheduled, retrying, running and dead-lettered; committed events in the
    outbox, a staging record, a beating worker; the flags an operator would have on."""
    for flag in (
        "queue.job_substrate.enabled",
        "queue.lease_reaper.enabled",
        "queue.heartbeat.enabled",
        "queue.dispatch.enabled",
    ):
        conn.execute("SELECT conveyor.fn_config_set(%s, 'true')", (flag,))
    for n in range(20):
        conn.execute(
            "SELECT conveyor.fn_job_enqueue(kind => 'traffic.work', payload => %s::jsonb)",
            (f'{{"n": {n}}}',),
        )
    conn.execute(
        "SELECT conveyor.fn_job_enqueue(kind => 'traffic.later',"
        " run_at => now() + interval '1 day')"
    )
    claim = conn.execute(
        "SELECT conveyor.fn_job_claim(worker => 'traffic-worker', batch => 6,"
        " lease_seconds => 3600)"
    ).fetchone()
    assert claim is not None
    jobs = claim[0]["jobs"]
    assert len(jobs) == 6, claim
    conn.execute(
        "SELECT conveyor.fn_job_fail_permanent(job_id => %s, lease_token => %s, error => 'boom')",
        (jobs[0]["job_id"], jobs[0]["lease_token"]),
    )
    conn.execute(
        "SELECT conveyor.fn_job_fail_transient(job_id => %s, lease_token => %s, error => 'again')",
        (jobs[1]["job_id"], jobs[1]["lease_token"]),
    )
    conn.execute(
        "SELECT conveyor.fn_job_complete(job_id => %s, lease_token => %s)",
        (jobs[2]["job_id"], jobs[2]["lease_token"]),
    )
    for n in range(5):
        conn.execute(
            "SELECT conveyor.fn_outbox_emit('staging.record_marked', %s::jsonb, 'traffic')",
            (f'{{"n": {n}}}',),
        )
    conn.execute("SELECT iu_core.fn_iu_op_mark('traffic', 'record-1', 'traffic', 'ref://1')")
    conn.execute("SELECT conveyor.fn_heartbeat_register('traffic-worker', 'worker', 10)")
    conn.execute("SELECT conveyor.fn_heartbeat_beat('traffic-worker')")
    conn.execute("SELECT conveyor.fn_consumer_dispatch(batch => 100)")


@pytest.fixture(scope="module")
def busy_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A database with every implemented phase applied and live traffic in it."""
    name = f"conveyor_gates_{uuid.uuid4().hex[:8]}"
    params = {k: str(v) for k, v in conninfo_to_dict(pg_admin_dsn).items() if v is not None}
    params["dbname"] = name
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_conninfo("", **params)
        with psycopg.connect(url, autocommit=True) as conn:
            for phase in IMPLEMENTED:
                _apply(conn, phase.number)
            _fill_with_traffic(conn)
        yield url
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("phase", IMPLEMENTED, ids=lambda p: f"{p.number}_{p.slug}")
def test_each_gate_passes_with_all_phases_applied_and_traffic_in_the_database(
    busy_dsn: str, phase: catalog.Phase
) -> None:
    with psycopg.connect(busy_dsn, autocommit=True) as conn:
        result = runner.verify(conn, phase.number, "tests")
    assert result.failures == [], result.failures


def _url(conninfo: str) -> str:
    """A postgresql:// URL for the CLI, from a libpq key=value string."""
    p = conninfo_to_dict(conninfo)
    password = f":{p['password']}" if p.get("password") else ""
    return f"postgresql://{p['user']}{password}@{p['host']}:{p['port']}/{p['dbname']}"


def test_conveyor_phase_verify_exits_0_for_every_phase_on_a_busy_database(busy_dsn: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_TEST_DATABASE_URL"}
    }
    env["CONVEYOR_DATABASE_URL"] = _url(busy_dsn)
    for phase in IMPLEMENTED:
        result = subprocess.run(
            [sys.executable, "-m", "conveyor", "phase", "verify", str(phase.number)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (phase.number, result.stdout, result.stderr)


def test_running_every_gate_leaves_the_traffic_as_it_was(busy_dsn: str) -> None:
    snapshot = """
        SELECT (SELECT jsonb_agg(to_jsonb(jq) ORDER BY jq.id) FROM conveyor.job_queue AS jq),
               (SELECT jsonb_agg(to_jsonb(dl) ORDER BY dl.id) FROM conveyor.job_dead_letter AS dl),
               (SELECT jsonb_agg(to_jsonb(eo) ORDER BY eo.id) FROM conveyor.event_outbox AS eo),
               (SELECT jsonb_agg(to_jsonb(dc) ORDER BY dc.key) FROM conveyor.dot_config AS dc)
    """
    with psycopg.connect(busy_dsn, autocommit=True) as conn:
        before = conn.execute(snapshot).fetchone()
        for phase in IMPLEMENTED:
            runner.verify(conn, phase.number, "tests")
        assert conn.execute(snapshot).fetchone() == before


# One way to break each phase: drop something only it creates. Each must fail its own gate.
BREAKS: tuple[tuple[int, str], ...] = (
    (0, "DROP FUNCTION iu_core.fn_iu_op_cleanup(bigint, text)"),
    (0, "DROP INDEX conveyor.event_outbox_txid_id_idx"),
    (1, "DROP FUNCTION conveyor.fn_job_complete(bigint, uuid, jsonb)"),
    (1, "DROP INDEX conveyor.job_queue_claim_idx"),
    (2, "DROP FUNCTION conveyor.fn_job_lease_reaper(integer)"),
    (2, "DROP FUNCTION conveyor.fn_job_dead_letter_replay"),
    (3, "DROP FUNCTION conveyor.fn_heartbeat_stale_check()"),
    (3, "DROP TRIGGER iu_outbound_worker_heartbeat_trg ON conveyor.iu_outbound_worker"),
    (4, "DROP FUNCTION conveyor.fn_consumer_dispatch(integer)"),
    (4, "DROP FUNCTION conveyor.fn_job_unsubscribe(text, text)"),
    (7, "DROP FUNCTION conveyor.fn_customer_send_begin(bigint, bigint)"),
    (7, "DROP TRIGGER job_queue_customer_approve_released_trg ON conveyor.job_queue"),
    (8, "DROP INDEX conveyor.job_queue_key_idx"),
    (8, "DROP FUNCTION conveyor.fn_job_key_limit(text, text, integer, integer, numeric)"),
)


@pytest.mark.parametrize(("number", "damage"), BREAKS, ids=[f"{n}: {d}" for n, d in BREAKS])
def test_a_gate_fails_when_its_phase_is_broken(busy_dsn: str, number: int, damage: str) -> None:
    phase = catalog.get(number)
    with psycopg.connect(busy_dsn) as conn, conn.transaction(force_rollback=True):
        assert all(passed for _, passed, _ in _gate_rows(conn, phase))
        conn.execute(damage.encode())
        rows = _gate_rows(conn, phase)
    assert rows, "the gate returned no rows"
    assert not all(passed for _, passed, _ in rows), rows


@pytest.mark.parametrize("phase", IMPLEMENTED, ids=lambda p: f"{p.number}_{p.slug}")
def test_up_gate_down_restores_the_catalog_and_up_again_passes(
    empty_dsn: str, phase: catalog.Phase
) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for earlier in _earlier(phase):
            _apply(conn, earlier.number)
        before = fingerprint.catalog_fingerprint(conn)

        first = _apply(conn, phase.number)
        assert first.gate is not None and first.gate.failures == []
        assert runner.verify(conn, phase.number, "tests").failures == []
        runner.rollback(conn, phase.number, "tests")
        assert fingerprint.catalog_fingerprint(conn) == before

        again = _apply(conn, phase.number)
        assert again.gate is not None and again.gate.failures == []
