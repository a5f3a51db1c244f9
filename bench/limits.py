#!/usr/bin/env python3
"""Limits (phase 8) measured side by side in one run, on three scratch databases of one server.

1. Drain, interleaved round by round (each run is ``adapter.py --scenario drain`` in a fresh
   process, as bench/drain.py runs it): phases 0–4 without phase 8 (``base``); phase 8 applied,
   no limit (``p8``); phase 8 with a queue cap, a rate, and both, far above what the drain
   reaches (``cap``, ``rate``, ``cap+rate``), and a cap of twice the workers' slots (``cap 256``
   for the default 2 x 64): the limit is not the bottleneck. Then with the backlog spread over
   --keys concurrency keys (default 100): no limit, a queue cap (keys taken in turn), a cap of
   every key (``keys``, ``keys+cap``, ``keys+keycap``). Ratios of medians: p8 ÷ base (issue:
   ≥ 0.97), each limited ÷ p8 and the keyed ones ÷ keys (issue: ≥ 0.85). Then the claim alone
   on one connection per database (no worker, no contention): its median latency in base, p8
   and a third database with phase 8 and a cap (each database drained by its own claims only).
2. Rate: 200/s on a queue with a backlog of 8,000 no-op jobs and 8 workers × 50 slots on 2
   processes at the default poll interval; jobs started in the 30 s from the first (issue:
   6,000 ± 2 %).
3. Fairness: one key with 100,000 queued jobs (older) and 50 keys with 10 each, claimed 10 at a
   time; the claim at which the last small key has all its 10 (issue: within 2,000).

Usage:

    .venv/bin/python bench/limits.py --dsn postgresql://bench:bench@127.0.0.1:5432/postgres
    .venv/bin/python bench/limits.py --dsn … --rounds 5 --jobs 20000 --processes 2 --slots 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import conveyor
from conveyor.handlers import JobContext, Registry
from conveyor.phases import runner
from conveyor.worker import Worker, WorkerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.drain, as mypy names it
from bench.drain import Measurement, Setting, measure

KIND = "bench.noop"  # the adapter's kind: its workers run these
BY = "bench-limits"
# variant → the limit on the adapter's queue before its runs (base: the phase 0–4 database)
VARIANTS: dict[str, LiteralString | None] = {
    "base": None,
    "p8": None,
    "cap": "SELECT conveyor.fn_job_queue_limit('default', max_in_progress => 1000000)",
    # twice the default setting's slots (2 processes x 64): in reach, never reached
    "cap 256": "SELECT conveyor.fn_job_queue_limit('default', max_in_progress => 256)",
    "rate": "SELECT conveyor.fn_job_queue_limit('default', rate => 1000000, per_seconds => 1)",
    "cap+rate": "SELECT conveyor.fn_job_queue_limit('default', max_in_progress => 1000000,"
    " rate => 1000000, per_seconds => 1)",
}
# the same with the backlog spread over --keys concurrency keys: no limit (claims ignore the
# keys), a queue cap (keys taken in turn), a cap of every key (and the jobs in progress per key)
KEYED: dict[str, LiteralString | None] = {
    "keys": None,
    "keys+cap": VARIANTS["cap"],
    "keys+keycap": "SELECT conveyor.fn_job_key_limit('default', NULL, max_in_progress => 1000000)",
}
CLEAR: LiteralString = (
    "DELETE FROM conveyor.job_key_limit WHERE queue = 'default';"
    " DELETE FROM conveyor.job_queue_limit WHERE queue = 'default'"
)


# ---------------------------------------------------------------------------------- databases


@contextmanager
def scratch(server: str, phases: Sequence[int], label: str) -> Iterator[str]:
    """A new database on *server* with *phases* applied and the substrate and limits on."""
    name = f"conveyor_limits_{label}_{uuid.uuid4().hex[:6]}"
    params = {k: str(v) for k, v in conninfo_to_dict(server).items() if v is not None}
    params["dbname"] = name
    dsn = make_conninfo("", **params)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with conveyor.connect(dsn, autocommit=True) as conn:
            for number in phases:
                runner.ratify(conn, number, BY, "limits benchmark")
                result = runner.apply(conn, number, BY)
                if result.gate is not None and not result.gate.passed:
                    sys.exit(f"phase {number}'s gate failed: {result.gate.failures}")
            conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
            if 8 in phases:
                conn.execute("SELECT conveyor.fn_config_set('queue.limits.enabled', 'true')")
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backlog(
    conn: psycopg.Connection[Any],
    queue: str,
    count: int,
    *,
    key: str | None = None,
    keys: int = 1,
    age: float = 0,
) -> None:
    """*count* queued no-op jobs on *queue* with a set-based INSERT (seq 1..count in the payload),
    run_at *age* seconds ago; with *key* (phase 8), spread over the keys ``<key><seq mod keys>``."""
    column: sql.Composable = sql.SQL("")
    value: sql.Composable = sql.SQL("")
    if key is not None:
        column = sql.SQL(", concurrency_key")
        value = sql.SQL(", {} || (g % {})").format(key, keys)
    conn.execute(
        sql.SQL(
            "INSERT INTO conveyor.job_queue (queue, kind, payload, status, run_at{})"
            " SELECT {}, {}, jsonb_build_object('seq', g), 'queued',"
            "        now() - make_interval(secs => {}){}"
            "   FROM generate_series(1, {}) AS g"
        ).format(column, queue, KIND, age, value, count)
    )


# ---------------------------------------------------------------------------------- 1. drain


def drains(
    base: str, p8: str, setting: Setting, jobs: int, rounds: int, keys: int
) -> dict[str, list[Measurement]]:
    plan = [(name, limit, 0) for name, limit in VARIANTS.items()]
    plan += [(name, limit, keys) for name, limit in KEYED.items() if keys]
    runs: dict[str, list[Measurement]] = {name: [] for name, _, _ in plan}
    for n in range(rounds):
        for name, limit, spread in plan:
            dsn = base if name == "base" else p8
            with psycopg.connect(p8, autocommit=True) as conn:
                conn.execute(CLEAR)
                if limit is not None:
                    conn.execute(limit)
            extra = ["--keys", str(spread)] if spread else []
            run = measure(dsn, setting, jobs, timeout=300, extra=extra)
            runs[name].append(run)
            rate = f"{run.jobs_per_s:,.0f}" if run.jobs_per_s else "-"
            print(
                f"  round {n + 1} {name:<11} {rate:>8} jobs/s  verified {run.verified}", flush=True
            )
    with psycopg.connect(p8, autocommit=True) as conn:
        conn.execute(CLEAR)
    return runs


def median(runs: list[Measurement]) -> float | None:
    rates = [r.jobs_per_s for r in runs if r.verified and r.jobs_per_s]
    return statistics.median(rates) if rates else None


def claim_ids(conn: psycopg.Connection[Any], batch: int) -> list[int]:
    """The ids fn_job_claim(batch => *batch*) leases on *conn*."""
    row = conn.execute(
        "SELECT conveyor.fn_job_claim(worker => 'bench', batch => %s)", (batch,)
    ).fetchone()
    assert row is not None
    return [int(job["job_id"]) for job in row[0]["jobs"]]


def finish(conn: psycopg.Connection[Any], ids: list[int]) -> None:
    """Mark *ids* done by a plain UPDATE (the claim is what is measured, not the completion)."""
    conn.execute(
        "UPDATE conveyor.job_queue SET status = 'succeeded', finished_at = now()"
        " WHERE id = ANY(%s)",
        (ids,),
    )


def claim_latency(dsns: dict[str, str], rounds: int, calls: int) -> dict[str, float]:
    """Median ms of fn_job_claim(batch => 32) on one connection per database (each batch then
    marked done), the databases taken in turn block by block; "cap" has a cap far above."""
    samples: dict[str, list[float]] = {name: [] for name in dsns}
    conns = {name: psycopg.connect(dsn, autocommit=True) for name, dsn in dsns.items()}
    try:
        for name, conn in conns.items():
            conn.execute("TRUNCATE conveyor.job_queue")
            backlog(conn, "default", 32 * calls * rounds + 1000)
            conn.execute("VACUUM ANALYZE conveyor.job_queue")
            if name == "cap":
                conn.execute(VARIANTS["cap"] or "")
        for _ in range(rounds):
            for name, conn in conns.items():
                for n in range(calls):
                    started = time.perf_counter()
                    ids = claim_ids(conn, 32)
                    if n >= 20:  # past the plan cache's first calls
                        samples[name].append(time.perf_counter() - started)
                    finish(conn, ids)
    finally:
        for conn in conns.values():
            conn.close()
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


# ---------------------------------------------------------------------------------- 2. rate


async def work(dsn: str, queue: str, workers: int, slots: int) -> None:
    """The rate run's worker process: *workers* Worker objects of *slots*, default poll."""
    registry = Registry()

    @registry.handler(KIND)
    async def noop(context: JobContext) -> None:
        return None

    config = WorkerConfig(queues=(queue,), concurrency=slots)
    running = [Worker(registry, dsn, config) for _ in range(workers)]

    def stop() -> None:
        for worker in running:
            worker.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    await asyncio.gather(*(w.run() for w in running))


def rate_run(dsn: str, rate: int, seconds: float, jobs: int) -> tuple[int, float]:
    """Jobs started in the *seconds* from the first under a rate of *rate*/s; poll interval."""
    queue = f"bench-rate-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        backlog(conn, queue, jobs)
        conn.execute(
            "SELECT conveyor.fn_job_queue_limit(%s, rate => %s, per_seconds => 1)", (queue, rate)
        )
    command = [sys.executable, __file__, "--worker", dsn, queue]
    processes = [subprocess.Popen(command) for _ in range(2)]
    try:
        time.sleep(seconds + 5)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE jq.started_at < f.first + make_interval(secs => %s))"
            "  FROM conveyor.job_queue AS jq,"
            "       (SELECT min(started_at) AS first FROM conveyor.job_queue WHERE queue = %s) AS f"
            " WHERE jq.queue = %s",
            (seconds, queue, queue),
        ).fetchone()
        conn.execute("DELETE FROM conveyor.job_queue WHERE queue = %s", (queue,))
        conn.execute("DELETE FROM conveyor.job_queue_limit WHERE queue = %s", (queue,))
    assert row is not None
    return int(row[0]), WorkerConfig().poll_interval


# ---------------------------------------------------------------------------------- 3. fairness


def fairness(dsn: str, big: int, small_keys: int, each: int, batch: int) -> int | None:
    """The claim (job number) at which the last small key had all its jobs claimed."""
    queue = f"bench-fair-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        backlog(conn, queue, big, key="big", age=3600)  # one key, older: first in line
        backlog(conn, queue, small_keys * each, key="small-", keys=small_keys)
        conn.execute("ANALYZE conveyor.job_queue")
        conn.execute("SELECT conveyor.fn_job_queue_limit(%s, max_in_progress => 1000000)", (queue,))
        left = {f"small-{n}": each for n in range(small_keys)}
        claimed = 0
        finished_at: int | None = None
        while claimed < 10 * small_keys * each + big and finished_at is None:
            answer = conn.execute(
                "SELECT conveyor.fn_job_claim(worker => 'bench', queues => ARRAY[%s], batch => %s)",
                (queue, batch),
            ).fetchone()
            assert answer is not None
            ids = [int(job["job_id"]) for job in answer[0]["jobs"]]
            if not ids:
                break
            keys = conn.execute(
                "SELECT concurrency_key FROM conveyor.job_queue WHERE id = ANY(%s) ORDER BY id",
                (ids,),
            ).fetchall()
            for (key,) in keys:
                claimed += 1
                if key in left:
                    left[key] -= 1
                    if left[key] == 0:
                        del left[key]
                        if not left:
                            finished_at = claimed
        conn.execute("DELETE FROM conveyor.job_queue WHERE queue = %s", (queue,))
        conn.execute("DELETE FROM conveyor.job_queue_limit WHERE queue = %s", (queue,))
    return finished_at


# ---------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a server role that may create databases")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keys", type=int, default=100, help="keyed drains' keys; 0: none")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip", choices=("drain", "rate", "fairness"), action="append")
    args = parser.parse_args(argv)
    skip = set(args.skip or ())
    setting = Setting(args.processes, args.slots, args.batch)
    ok = True
    with (
        scratch(args.dsn, (0, 1, 2, 3, 4), "base") as base,
        scratch(args.dsn, (0, 1, 2, 3, 4, 8), "p8") as p8,
        scratch(args.dsn, (0, 1, 2, 3, 4, 8), "cap") as cap,
    ):
        if "drain" not in skip:
            print(f"drain, {args.jobs:,} no-op jobs per run, {setting}:", flush=True)
            runs = drains(base, p8, setting, args.jobs, args.rounds, args.keys)
            medians = {name: median(r) for name, r in runs.items()}
            print(
                "\n| variant | median jobs/s | ÷ base | ÷ p8 (no limit) |"
                " ÷ keys (keyed, no limit) |"
                "\n|---|---:|---:|---:|---:|"
            )
            for name, value in medians.items():
                b, p, k = medians["base"], medians["p8"], medians.get("keys")
                cells = [f"{value:,.0f}" if value else "-"]
                cells += [f"{value / d:.3f}" if value and d else "-" for d in (b, p, k)]
                print(f"| {name} | {' | '.join(cells)} |")
            ok = ok and all(m.verified for r in runs.values() for m in r)
            ms = claim_latency({"base": base, "p8": p8, "cap": cap}, args.rounds, calls=200)
            print(
                "\nfn_job_claim(batch => 32), one connection, median ms: "
                + ", ".join(f"{name} {value:.3f}" for name, value in ms.items())
                + f"; base ÷ p8 (no limit) {ms['base'] / ms['p8']:.3f},"
                f" p8 ÷ cap {ms['p8'] / ms['cap']:.3f} (speed ratios)",
                flush=True,
            )
        if "rate" not in skip:
            delivered, poll = rate_run(
                p8, args.rate, args.seconds, int(args.rate * args.seconds * 1.4)
            )
            want = args.rate * args.seconds
            print(
                f"\nrate {args.rate}/s, 8 workers x 50 slots on 2 processes, poll {poll} s:"
                f" {delivered:,} started in {args.seconds:.0f} s (want {want:,.0f} ± 2 %:"
                f" {delivered / want:.4f})",
                flush=True,
            )
        if "fairness" not in skip:
            at = fairness(p8, big=100_000, small_keys=50, each=10, batch=10)
            print(
                "\nfairness: 1 key x 100,000 (older) + 50 keys x 10, claims of 10:"
                f" the last small key had all 10 at claim {at}",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        asyncio.run(work(sys.argv[2], sys.argv[3], workers=4, slots=50))
        sys.exit(0)
    try:
        sys.exit(main())
    except psycopg.OperationalError as error:  # a server that is not there: one line, not a trace
        sys.exit(f"bench/limits.py: cannot use the database: {str(error).strip().splitlines()[0]}")
