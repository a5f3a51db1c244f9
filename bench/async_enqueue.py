#!/usr/bin/env python3
"""Enqueue rate of the asyncio client (conveyor.aio) next to the sync one (conveyor.jobs).

    CONVEYOR_DATA_DIR=/tmp/async-bench .venv/bin/python bench/async_enqueue.py   # embedded server
    .venv/bin/python bench/async_enqueue.py --dsn postgresql://USER@HOST:PORT/postgres

On a scratch database (phases 0–1, substrate on, dropped at the end): one producer, one
connection, autocommit, so each `enqueue` is one call and one transaction (the way a web
request enqueues); `enqueue_many` sends --batch jobs per call. The sync and the async client
alternate for --rounds rounds after one untimed warm-up each (which goes first alternates too,
so drift hits both alike); the figure is each one's median jobs/s and async ÷ sync. Prints one
JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor import aio, db, jobs
from conveyor.phases import runner

QUEUE = "bench.async_enqueue"


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def sync_round(url: str, count: int, batch: int) -> float:
    """Seconds to enqueue *count* jobs with the sync client (one call each, or *batch* a call)."""
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        if batch == 1:
            for n in range(count):
                jobs.enqueue(conn, "bench.noop", {"seq": n}, queue=QUEUE)
        else:
            for first in range(0, count, batch):
                items = range(first, min(first + batch, count))
                jobs.enqueue_many(conn, [{"kind": "bench.noop", "queue": QUEUE} for _ in items])
        return time.perf_counter() - start


async def async_round(url: str, count: int, batch: int) -> float:
    """Seconds to enqueue *count* jobs with the asyncio client, the same calls as sync_round."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        if batch == 1:
            for n in range(count):
                await aio.enqueue(conn, "bench.noop", {"seq": n}, queue=QUEUE)
        else:
            for first in range(0, count, batch):
                items = range(first, min(first + batch, count))
                await aio.enqueue_many(
                    conn, [{"kind": "bench.noop", "queue": QUEUE} for _ in items]
                )
        return time.perf_counter() - start


def clear(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor.job_queue")
        conn.execute("VACUUM ANALYZE conveyor.job_queue")


def measure(url: str, count: int, batch: int, rounds: int) -> dict[str, Any]:
    """Median jobs/s of each client over *rounds* alternating rounds, and their ratio."""
    runs: dict[str, Callable[[], float]] = {
        "sync": lambda: sync_round(url, count, batch),
        "async": lambda: asyncio.run(async_round(url, count, batch)),
    }
    for run in runs.values():  # warm-up, untimed: caches, prepared statements, the first page
        clear(url)
        run()
    rates: dict[str, list[float]] = {"sync": [], "async": []}
    for number in range(rounds):
        order = ["sync", "async"] if number % 2 == 0 else ["async", "sync"]
        for name in order:
            clear(url)
            rates[name].append(count / runs[name]())
    sync_rate, async_rate = statistics.median(rates["sync"]), statistics.median(rates["async"])
    return {
        "batch": batch,
        "jobs": count,
        "rounds": rounds,
        "sync_jobs_per_s": round(sync_rate, 1),
        "async_jobs_per_s": round(async_rate, 1),
        "async_over_sync": round(async_rate / sync_rate, 3),
        "within_10_percent": async_rate >= 0.9 * sync_rate,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per round (one call each)")
    parser.add_argument("--batch", type=int, default=500, help="jobs per enqueue_many call")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per client")
    args = parser.parse_args()
    admin_dsn = args.dsn or db.resolve_url()
    name = f"conveyor_async_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = scratch(admin_dsn, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for number in (0, 1):
                runner.ratify(conn, number, "bench")
                runner.apply(conn, number, "bench")
            conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
        results = [
            measure(url, args.jobs, 1, args.rounds),
            measure(url, args.jobs * 10, args.batch, args.rounds),
        ]
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.stop_embedded()
    for result in results:
        call = "enqueue" if result["batch"] == 1 else f"enqueue_many x{result['batch']}"
        print(
            f"{call:>20}: sync {result['sync_jobs_per_s']:>9.1f} jobs/s  "
            f"async {result['async_jobs_per_s']:>9.1f} jobs/s  "
            f"async/sync {result['async_over_sync']:.3f}"
        )
    print(json.dumps({"scenario": "async_enqueue", "results": results}))
    return 0 if all(r["within_10_percent"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
