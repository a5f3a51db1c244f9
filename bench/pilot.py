#!/usr/bin/env python3
"""MARK/CUT pilot (phase 5): records per second from APPROVE to CLEANUP with 2 worker processes,
and approve → cleaned latency (p50/p99), on a scratch database of the given server.

    CONVEYOR_DATA_DIR=/tmp/pilot-bench .venv/bin/python bench/pilot.py        # embedded server
    .venv/bin/python bench/pilot.py --dsn postgresql://USER@HOST:PORT/postgres

Two runs, each through the real path (outbox → dispatch by `conveyor orchestrator` → job_queue →
`conveyor worker --executor agent --app conveyor.pilot:registry`, 2 processes):
  burst:   --records approved in one transaction; throughput = records / (last cleaned_at −
           first approved_at), latency per record = cleaned_at − approved_at (database clock).
  trickle: one record approved every 1/--rate s for --seconds s; latency as above (an idle
           pipeline: what one record costs end to end).
Every run is verified: each record cleaned, one target row each, no dead letter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor import db
from conveyor.phases import runner

FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "queue.dispatch.enabled",
    "queue.notify.bridge_enabled",
    "pilot.cut.enabled",
)
LATENCY_SQL = """
    SELECT count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY l.seconds),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY l.seconds),
           extract(epoch FROM max(r.cleaned_at) - min(r.approved_at))
      FROM iu_core.iu_staging_record AS r
     CROSS JOIN LATERAL (SELECT extract(epoch FROM r.cleaned_at - r.approved_at) AS seconds) AS l
     WHERE r.record_key LIKE %s AND r.status = 'cleaned'
"""
CLEANED_SQL = (
    "SELECT count(*) FROM iu_core.iu_staging_record WHERE record_key LIKE %s AND status = 'cleaned'"
)


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def stage(conn: psycopg.Connection[Any], prefix: str, count: int) -> list[int]:
    rows = conn.execute(
        "SELECT (conveyor.fn_pilot_mark('pilot', %s || g, repeat('x', 200), 'bench')"
        " ->> 'record_id')::bigint FROM generate_series(1, %s) AS g",
        (prefix, count),
    ).fetchall()
    return [int(r[0]) for r in rows]


def wait_cleaned(conn: psycopg.Connection[Any], prefix: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(CLEANED_SQL, (prefix + "%",)).fetchone()
        if row is not None and row[0] >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {row[0] if row else 0} of {count} records cleaned in {timeout} s"
            )
        time.sleep(0.2)


def verify(conn: psycopg.Connection[Any], prefix: str, count: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT t.record_id) FROM conveyor.pilot_cut_target AS t"
        " JOIN iu_core.iu_staging_record AS r ON r.id = t.record_id WHERE r.record_key LIKE %s",
        (prefix + "%",),
    ).fetchone()
    dead = conn.execute("SELECT count(*) FROM conveyor.job_dead_letter").fetchone()
    assert row == (count, count), f"target rows {row} for {count} records"
    assert dead == (0,), f"{dead} dead letters"
    stats = conn.execute(LATENCY_SQL, (prefix + "%",)).fetchone()
    assert stats is not None and stats[0] == count
    return {
        "records": count,
        "p50_ms": round(float(stats[1]) * 1000, 1),
        "p99_ms": round(float(stats[2]) * 1000, 1),
        "span_s": round(float(stats[3]), 3),
        "records_per_s": round(count / float(stats[3]), 1),
    }


def burst(conn: psycopg.Connection[Any], count: int) -> dict[str, Any]:
    prefix = f"burst-{uuid.uuid4().hex[:6]}-"
    ids = stage(conn, prefix, count)
    conn.execute(
        "SELECT iu_core.fn_iu_op_approve(id, 'bench') FROM unnest(%s::bigint[]) AS id", (ids,)
    )
    wait_cleaned(conn, prefix, count, timeout=max(120.0, count / 5))
    return {"run": "burst", **verify(conn, prefix, count)}


def trickle(conn: psycopg.Connection[Any], rate: float, seconds: float) -> dict[str, Any]:
    prefix = f"trickle-{uuid.uuid4().hex[:6]}-"
    count = max(1, int(rate * seconds))
    ids = stage(conn, prefix, count)
    start = time.monotonic()
    for n, record_id in enumerate(ids):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        conn.execute("SELECT iu_core.fn_iu_op_approve(%s, 'bench')", (record_id,))
    wait_cleaned(conn, prefix, count, timeout=120.0)
    result = verify(conn, prefix, count)
    del result["records_per_s"]  # paced by the producer, not a throughput
    return {"run": "trickle", "rate_per_s": rate, **result}


def start(url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--records", type=int, default=2000, help="records in the burst")
    parser.add_argument("--rate", type=float, default=10.0, help="trickle approvals per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="trickle duration")
    parser.add_argument("--interval", type=float, default=0.5, help="orchestrator tick interval")
    parser.add_argument("--concurrency", type=int, default=10, help="slots per worker process")
    args = parser.parse_args()
    admin_dsn = args.dsn or db.resolve_url()
    name = f"conveyor_pilot_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = scratch(admin_dsn, name)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for number in (0, 1, 2, 3, 4, 5):
                runner.ratify(conn, number, "bench")
                runner.apply(conn, number, "bench")
            for key in FLAGS:
                conn.execute("SELECT conveyor.fn_config_set(%s, 'true', 'bench')", (key,))
            processes.append(start(url, "orchestrator", "--interval", str(args.interval)))
            for n in range(2):
                processes.append(
                    start(
                        url,
                        "worker",
                        "--executor",
                        "agent",
                        "--app",
                        "conveyor.pilot:registry",
                        "--name",
                        f"bench-w{n}",
                        "--concurrency",
                        str(args.concurrency),
                    )
                )
            deadline = time.monotonic() + 60
            while conn.execute(
                "SELECT count(*) FROM conveyor.queue_heartbeat WHERE component LIKE 'bench-w%'"
                " AND last_beat_at IS NOT NULL"
            ).fetchone() != (2,):
                if time.monotonic() > deadline:
                    raise SystemExit("the two workers did not start within 60 s")
                time.sleep(0.2)
            results = [burst(conn, args.records), trickle(conn, args.rate, args.seconds)]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    config = {"workers": 2, "concurrency": args.concurrency, "tick_interval_s": args.interval}
    for result in results:
        print(json.dumps({"scenario": "pilot", **config, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
