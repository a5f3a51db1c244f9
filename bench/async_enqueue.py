#!/usr/bin/env python3
"""Enqueue rate of the asyncio client (conveyor.aio) next to the sync one (conveyor.jobs).

    CONVEYOR_DATA_DIR=/tmp/async-bench .venv/bin/python bench/async_enqueue.py   # embedded server
    .venv/bin/python bench/async_enqueue.py --dsn postgresql://USER@HOST:PORT/postgres

On a scratch database (phases 0–1, substrate on, dropped at the end): one producer, each client
on its own autocommit connection, so each `enqueue` is one call and one transaction (the way a
web request enqueues); `enqueue_many` sends --batch jobs per call. The two clients enqueue
--chunk jobs in turn, --rounds times each, after an untimed warm-up; the figure is each one's
jobs/s and the median async ÷ sync ratio of the pairs. Prints one JSON line last.
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
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def event_loop_factory(name: str) -> LoopFactory | None:
    """asyncio's own event loop, or uvloop's (what uvicorn runs when it is installed)."""
    if name == "asyncio":
        return None
    import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional: pip install uvloop

    factory: LoopFactory = uvloop.new_event_loop
    return factory


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def sync_chunk(conn: psycopg.Connection[Any], count: int, batch: int) -> float:
    """Seconds to enqueue *count* jobs with the sync client (one call each, or *batch* a call)."""
    start = time.perf_counter()
    if batch == 1:
        for n in range(count):
            jobs.enqueue(conn, "bench.noop", {"seq": n}, queue=QUEUE)
    else:
        for first in range(0, count, batch):
            items = range(first, min(first + batch, count))
            jobs.enqueue_many(conn, [{"kind": "bench.noop", "queue": QUEUE} for _ in items])
    return time.perf_counter() - start


async def async_chunk(conn: psycopg.AsyncConnection[Any], count: int, batch: int) -> float:
    """Seconds to enqueue *count* jobs with the asyncio client: the same calls as sync_chunk."""
    start = time.perf_counter()
    if batch == 1:
        for n in range(count):
            await aio.enqueue(conn, "bench.noop", {"seq": n}, queue=QUEUE)
    else:
        for first in range(0, count, batch):
            items = range(first, min(first + batch, count))
            await aio.enqueue_many(conn, [{"kind": "bench.noop", "queue": QUEUE} for _ in items])
    return time.perf_counter() - start


def measure(
    url: str, chunk: int, batch: int, rounds: int, loop_factory: LoopFactory | None = None
) -> dict[str, Any]:
    """Jobs/s of each client over *rounds* pairs of alternating chunks, and async ÷ sync.

    Both connections stay open and the chunks alternate (who goes first alternates too), so a
    neighbour's load or the table's growth falls on both alike; the ratio is the median of the
    per-pair ratios, the rates are totals over all chunks.
    """
    with (
        psycopg.connect(url, autocommit=True) as sync_conn,
        asyncio.Runner(loop_factory=loop_factory) as loop,
    ):
        async_conn = loop.run(psycopg.AsyncConnection.connect(url, autocommit=True))
        try:
            runs: dict[str, Callable[[], float]] = {
                "sync": lambda: sync_chunk(sync_conn, chunk, batch),
                "async": lambda: loop.run(async_chunk(async_conn, chunk, batch)),
            }
            for run in runs.values():  # warm-up, untimed: prepared statements, caches
                run()
            seconds: dict[str, list[float]] = {"sync": [], "async": []}
            for number in range(rounds):
                for name in ("sync", "async") if number % 2 == 0 else ("async", "sync"):
                    seconds[name].append(runs[name]())
        finally:
            loop.run(async_conn.close())
    ratios = [s / a for s, a in zip(seconds["sync"], seconds["async"], strict=True)]
    sync_rate = chunk * rounds / sum(seconds["sync"])
    async_rate = chunk * rounds / sum(seconds["async"])
    ratio = statistics.median(ratios)
    return {
        "batch": batch,
        "loop": "asyncio" if loop_factory is None else "uvloop",
        "jobs_per_chunk": chunk,
        "rounds": rounds,
        "sync_jobs_per_s": round(sync_rate, 1),
        "async_jobs_per_s": round(async_rate, 1),
        "async_over_sync": round(ratio, 3),
        "within_10_percent": ratio >= 0.9,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per chunk (one call each)")
    parser.add_argument("--batch", type=int, default=500, help="jobs per enqueue_many call")
    parser.add_argument("--rounds", type=int, default=20, help="chunks per client")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
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
            measure(url, args.chunk, 1, args.rounds, event_loop_factory(args.loop)),
            measure(url, args.chunk * 20, args.batch, args.rounds, event_loop_factory(args.loop)),
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
