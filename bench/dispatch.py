#!/usr/bin/env python3
"""Dispatch throughput (phase 4): events per second through fn_consumer_dispatch, with one
consumer that enqueues a job per event, on a scratch database of the given server.

    .venv/bin/python bench/dispatch.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.phases import runner


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def run_once(url: str, events: int, batch: int) -> float:
    """Seconds to dispatch *events* freshly emitted events."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor.job_queue")
        with conn.transaction():
            conn.execute(
                "SELECT conveyor.fn_outbox_emit('staging.record_marked',"
                " jsonb_build_object('record_id', g)) FROM generate_series(1, %s) AS g",
                (events,),
            )
        t0 = time.perf_counter()
        handled = 0
        while True:
            row = conn.execute(
                "SELECT conveyor.fn_consumer_dispatch(batch => %s)", (batch,)
            ).fetchone()
            assert row is not None and row[0].get("ok"), row
            handled += int(row[0]["read"])
            if not row[0]["more"] and handled >= events:
                break
        seconds = time.perf_counter() - t0
        jobs = conn.execute("SELECT count(*) FROM conveyor.job_queue").fetchone()
        assert jobs is not None and jobs[0] == events, f"{jobs} jobs for {events} events"
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a role that may create databases")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    name = f"conveyor_dispatch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = scratch(args.dsn, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for number in (0, 1, 2, 3, 4):
                runner.ratify(conn, number, "bench")
                runner.apply(conn, number, "bench")
            for key in ("queue.job_substrate.enabled", "queue.dispatch.enabled"):
                conn.execute("SELECT conveyor.fn_config_set(%s, 'true', 'bench')", (key,))
            conn.execute(
                "SELECT conveyor.fn_consumer_register(consumer => 'bench', event_pattern =>"
                " 'staging.record_marked', action => 'enqueue_job', job_kind => 'bench.marked')"
            )
        runs = [run_once(url, args.events, args.batch) for _ in range(args.reps)]
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rates = [args.events / s for s in runs]
    print(
        f"dispatch of {args.events:,} events, batch {args.batch}, one enqueue_job consumer:",
        file=sys.stderr,
    )
    for seconds, rate in zip(runs, rates, strict=True):
        print(f"  {seconds:6.2f} s  {rate:10,.0f} events/s", file=sys.stderr)
    print(
        json.dumps(
            {
                "scenario": "dispatch",
                "events": args.events,
                "batch": args.batch,
                "events_per_s_median": round(statistics.median(rates)),
                "runs_s": [round(s, 3) for s in runs],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
