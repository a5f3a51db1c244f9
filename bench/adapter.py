#!/usr/bin/env python3
"""conveyor's adapter for the side-by-side queue benchmark (harness README, "Adapter contract").

It measures conveyor the way a user runs it: phases applied through the runner, jobs added with
``conveyor.jobs.enqueue``/``enqueue_many``, and ``conveyor.worker.Worker`` processes running a
no-op handler. Process orchestration, timing and verification are this file's own (modelled on
the harness' adapters/common.py, which it does not import). Prints ONE JSON line on stdout, last;
exits 0 only when the run verified.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import multiprocessing
import platform
import queue
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event
from typing import Any, LiteralString

import psycopg

import conveyor
from conveyor import jobs
from conveyor.handlers import JobContext, Registry
from conveyor.phases import runner
from conveyor.worker import Worker, WorkerConfig, WorkerStats

SYSTEM = "conveyor"
SCENARIOS = ("install", "enqueue", "enqueue1", "drain", "latency")
KIND = "bench.noop"
PHASES = (0, 1, 2, 3)  # every implemented phase; 3 = heartbeats + the NOTIFY bridge
RATIFIED_BY = "bench"
BACKLOG_CHUNK = 5000  # jobs per enqueue_many call when the drain backlog is inserted
ENQUEUE_DEFAULT_BATCH = 1000

RESET_SQL: LiteralString = "TRUNCATE conveyor.job_queue, conveyor.job_dead_letter"
ENABLE_SQL: LiteralString = (
    "SELECT conveyor.fn_config_set(key => 'queue.job_substrate.enabled', value => 'true',"
    " updated_by => 'bench')"
)
BRIDGE_SQL: LiteralString = (
    "SELECT conveyor.fn_config_set(key => 'queue.notify.bridge_enabled', value => %s,"
    " updated_by => 'bench')"
)
# Unfinished = could still run: each status has its own partial index (claim, lease reaper).
UNFINISHED_SQL: LiteralString = """
    SELECT count(*) FROM conveyor.job_queue AS jq
     WHERE jq.status IN ('waiting', 'queued', 'in_progress')
"""
TOTALS_SQL: LiteralString = """
    SELECT (SELECT count(*) FROM conveyor.job_queue AS jq),
           (SELECT count(*) FROM conveyor.job_queue AS jq WHERE jq.status = 'succeeded'),
           (SELECT count(*) FROM conveyor.job_dead_letter AS dl)
"""

Conn = psycopg.Connection[Any]


# ---------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of *values*; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100.0 * len(ordered)) - 1))
    return ordered[rank]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def check_seqs(seqs: Sequence[int], n: int) -> dict[str, int]:
    """Compare the recorded seqs with range(n): executed, distinct, missing, duplicates."""
    distinct = set(seqs)
    return {
        "executed": len(seqs),
        "distinct": len(distinct),
        "missing": n - len(distinct & set(range(n))),
        "duplicates": len(seqs) - len(distinct),
    }


# ---------------------------------------------------------------------------------- database


def harness_connection(dsn: str) -> Conn:
    """An autocommit connection for the harness' own bookkeeping (reset, counts, checkpoint)."""
    return psycopg.connect(dsn, autocommit=True, application_name="conveyor-bench")


def install(dsn: str) -> list[str]:
    """Apply phases 0-3 via the runner (ratified by "bench"); switch the substrate on.

    Return the failed gate items (a failed gate does not undo the apply: they are reported).
    """
    failures: list[str] = []
    with conveyor.connect(dsn, autocommit=True, application_name="conveyor-bench") as conn:
        applied = runner.applied_phases(conn)
        for number in PHASES:
            if number in applied:
                continue
            runner.ratify(conn, number, RATIFIED_BY, "benchmark database")
            result = runner.apply(conn, number, RATIFIED_BY)
            if result.gate is not None:
                failures += [
                    f"phase {number}: {item}: {detail}" for item, detail in result.gate.failures
                ]
        conn.execute(ENABLE_SQL)
    for failure in failures:
        print(f"[conveyor-bench] gate item failed: {failure}", file=sys.stderr)
    return failures


def reset(dsn: str, bridge: bool = False) -> None:
    """Remove every job and dead letter, so a scenario starts from an empty queue.

    Also sets the phase-3 NOTIFY bridge: on for the latency scenario, else the library default
    (off), so enqueue figures do not pay for a pg_notify per statement.
    """
    with harness_connection(dsn) as conn:
        conn.execute(RESET_SQL)
        conn.execute(BRIDGE_SQL, ("true" if bridge else "false",))


def unfinished(conn: Conn) -> int:
    row = conn.execute(UNFINISHED_SQL).fetchone()
    return int(row[0]) if row else -1


def totals(dsn: str) -> dict[str, int]:
    """Rows in conveyor's tables: all jobs, succeeded jobs, dead letters, unfinished jobs."""
    with harness_connection(dsn) as conn:
        row = conn.execute(TOTALS_SQL).fetchone()
        assert row is not None
        return {
            "rows_present": int(row[0]),
            "succeeded_rows": int(row[1]),
            "dead_letters": int(row[2]),
            "unfinished_after": unfinished(conn),
        }


def settle(dsn: str, vacuum: bool) -> None:
    """Untimed: fresh statistics and no checkpoint pending inside the measurement."""
    statements: list[LiteralString] = ["VACUUM ANALYZE"] if vacuum else []
    statements.append("CHECKPOINT")
    try:
        with harness_connection(dsn) as conn:
            for statement in statements:
                conn.execute(statement)
    except psycopg.Error as error:  # a role without pg_checkpoint: carry on, say so
        print(f"[conveyor-bench] settle skipped: {error}", file=sys.stderr)


def job(seq: int, keys: int = 0) -> dict[str, Any]:
    """One enqueue_many item: the no-op kind, carrying its seq (and with *keys*, the
    concurrency_key ``k<seq mod keys>``: phase 8)."""
    item: dict[str, Any] = {"kind": KIND, "payload": {"seq": seq}}
    if keys:
        item["concurrency_key"] = f"k{seq % keys}"
    return item


def insert_backlog(dsn: str, n: int, keys: int = 0) -> float:
    """Enqueue seqs 0..n-1 with enqueue_many; return the seconds it took."""
    started = time.perf_counter()
    with conveyor.connect(dsn, autocommit=True, application_name="conveyor-bench") as conn:
        for first in range(0, n, BACKLOG_CHUNK):
            chunk = range(first, min(first + BACKLOG_CHUNK, n))
            jobs.enqueue_many(conn, [job(s, keys) for s in chunk])
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- enqueue


def scenario_enqueue(args: argparse.Namespace, single: bool) -> dict[str, Any]:
    """Time the enqueue calls only: B jobs per enqueue_many call, or one enqueue per job."""
    n, clients = args.jobs, max(1, args.concurrency)
    size = 1 if single else args.batch
    chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    reset(args.dsn)
    settle(args.dsn, vacuum=False)
    call_ms: list[float] = []
    conns = [
        conveyor.connect(args.dsn, autocommit=True, application_name="conveyor-bench")
        for _ in range(clients)
    ]

    def produce(conn: Conn, mine: list[list[int]]) -> None:
        for chunk in mine:
            started = time.perf_counter()
            if single:
                jobs.enqueue(conn, KIND, {"seq": chunk[0]})
            else:
                jobs.enqueue_many(conn, [job(s) for s in chunk])
            call_ms.append((time.perf_counter() - started) * 1000)

    try:
        threads = [
            threading.Thread(target=produce, args=(conn, chunks[i::clients]))
            for i, conn in enumerate(conns)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    counted = totals(args.dsn)
    return {
        "seconds": rounded(seconds, 4),
        "jobs_per_s": rounded(n / seconds, 1),
        "p50_ms": rounded(percentile(call_ms, 50)),
        "p99_ms": rounded(percentile(call_ms, 99)),
        "latency_of": f"one enqueue call ({size} job{'' if size == 1 else 's'})",
        "calls": len(chunks),
        **counted,
        "verified": len(call_ms) == len(chunks) and counted["rows_present"] == n,
    }


# ---------------------------------------------------------------------------------- workers


def worker_slots(args: argparse.Namespace) -> int:
    """Job slots of one Worker: --concurrency claim loops of --batch jobs each.

    The harness' raw reference runs C claim loops that each work through a batch of B jobs; a
    conveyor Worker holds at most `concurrency` jobs and claims up to `batch` of them at once, so
    the same shape is C·B slots claimed B at a time.
    """
    if args.slots is not None:
        return int(args.slots)
    return max(1, int(args.concurrency)) * int(args.batch or 1)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What each worker process runs: conveyor's WorkerConfig settings and the database."""

    dsn: str
    concurrency: int
    batch: int | None
    poll_interval: float
    lease_seconds: int
    queues: tuple[str, ...] | None = None  # None: the default queue only
    sync_handler: bool = False  # a plain def handler (runs in the worker's thread pool)

    def config(self) -> WorkerConfig:
        return WorkerConfig(
            queues=self.queues,
            concurrency=self.concurrency,
            batch=self.batch,
            poll_interval=self.poll_interval,
            lease_seconds=self.lease_seconds,
        )


@dataclass(slots=True)
class WorkerReport:
    """What a worker process sends back when it stops."""

    idx: int
    seqs: list[int] = field(default_factory=list)
    times_ns: list[int] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Signals:
    """Shared between the parent and the worker processes."""

    counters: SynchronizedArray[int]  # handlers started, per process
    readies: list[Event]
    go: Event
    stop: Event
    reports: Queue[WorkerReport]


def worker_process(plan: WorkerPlan, idx: int, signals: Signals) -> None:
    """Entry point of one worker process: run a Worker until the parent says stop."""
    report = WorkerReport(idx)
    try:
        stats = asyncio.run(run_worker(plan, idx, signals, report))
        report.stats = asdict(stats)
    except BaseException:  # report, never hang the parent
        report.error = traceback.format_exc()
        signals.readies[idx].set()
    signals.reports.put(report)


async def run_worker(
    plan: WorkerPlan, idx: int, signals: Signals, report: WorkerReport
) -> WorkerStats:
    counters = signals.counters
    registry = Registry()

    if plan.sync_handler:
        lock = threading.Lock()

        @registry.handler(KIND)
        def noop_sync(context: JobContext) -> None:
            with lock:  # handlers run in threads: keep the shared counter exact
                report.times_ns.append(time.monotonic_ns())
                report.seqs.append(int(context.payload["seq"]))
                counters[idx] += 1

    else:

        @registry.handler(KIND)
        async def noop(context: JobContext) -> None:
            report.times_ns.append(time.monotonic_ns())  # first thing: when the handler started
            report.seqs.append(int(context.payload["seq"]))
            counters[idx] += 1

    worker = Worker(registry, plan.dsn, plan.config())
    # Worker.run() opens its own connection: prove the server answers before reporting ready.
    with conveyor.connect(plan.dsn, application_name="conveyor-bench") as probe:
        probe.execute("SELECT 1")
    signals.readies[idx].set()
    while not signals.go.is_set():
        await asyncio.sleep(0.001)
    running = asyncio.create_task(worker.run())
    while not signals.stop.is_set() and not running.done():
        await asyncio.sleep(0.02)
    worker.stop()
    return await running


class WorkerPool:
    """P worker processes: started, awaited until ready, released together, stopped together."""

    def __init__(self, plan: WorkerPlan, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.signals = Signals(
            counters=context.Array(ctypes.c_longlong, processes, lock=False),
            readies=[context.Event() for _ in range(processes)],
            go=context.Event(),
            stop=context.Event(),
            reports=context.Queue(),
        )
        self.processes = [
            context.Process(target=worker_process, args=(plan, i, self.signals), daemon=True)
            for i in range(processes)
        ]
        self.released_ns = 0

    def start(self, timeout: float = 60.0) -> None:
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        for ready in self.signals.readies:
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a worker process did not become ready in time")

    def release(self) -> None:
        self.released_ns = time.monotonic_ns()
        self.signals.go.set()

    def handlers_started(self) -> int:
        return sum(self.signals.counters[i] for i in range(len(self.processes)))

    def alive(self) -> bool:
        return all(process.is_alive() for process in self.processes)

    def wait_for_handlers(self, n: int, deadline: float) -> None:
        """Until n handlers started, the deadline (perf_counter) passed, or a worker died."""
        while self.handlers_started() < n and time.perf_counter() < deadline and self.alive():
            time.sleep(0.002)

    def collect(self, timeout: float = 60.0) -> tuple[list[WorkerReport], list[str]]:
        """Stop every worker, gather the reports; the errors list names what went wrong."""
        self.signals.stop.set()
        reports: list[WorkerReport] = []
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        while len(reports) < len(self.processes) and time.monotonic() < deadline:
            try:
                report = self.signals.reports.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:  # a worker never reported
                break
            reports.append(report)
            if report.error:
                errors.append(f"worker {report.idx}: {report.error}")
        if len(reports) < len(self.processes):
            errors.append(f"only {len(reports)}/{len(self.processes)} workers reported back")
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        return reports, errors


def worker_summary(reports: Sequence[WorkerReport], released_ns: int) -> dict[str, Any]:
    """Summed WorkerStats, and how long after release each process ran its first handler."""
    stats: dict[str, int] = {}
    for report in reports:
        for key, value in report.stats.items():
            stats[key] = stats.get(key, 0) + value
    firsts = [(min(r.times_ns) - released_ns) / 1e6 for r in reports if r.times_ns]
    return {
        "worker_stats": stats,
        "first_handler_ms": [rounded(ms, 1) for ms in sorted(firsts)],
    }


def stats_problems(stats: dict[str, int]) -> list[str]:
    """A no-op job only succeeds: any other outcome the workers counted is a failure."""
    return [
        f"workers counted {stats[key]} {key}"
        for key in ("retried", "dead_lettered", "lease_lost", "released", "cancelled", "snoozed")
        if stats.get(key)
    ]


# ---------------------------------------------------------------------------------- drain


def scenario_drain(args: argparse.Namespace, plan: WorkerPlan) -> dict[str, Any]:
    """Time P released workers from release until conveyor's tables hold no unfinished job."""
    n = args.jobs
    reset(args.dsn)
    insert_seconds = insert_backlog(args.dsn, n, args.keys)
    with harness_connection(args.dsn) as conn:
        before = unfinished(conn)
    if before != n:
        raise RuntimeError(f"backlog insert left {before} unfinished jobs, expected {n}")
    settle(args.dsn, vacuum=True)

    pool = WorkerPool(plan, args.processes)
    pool.start()
    started = time.perf_counter()
    pool.release()
    deadline = started + args.timeout
    pool.wait_for_handlers(n, deadline)
    handlers_done = time.perf_counter()
    left = -1
    with harness_connection(args.dsn) as conn:  # all handlers ran: wait for conveyor's tables
        while time.perf_counter() < deadline:
            left = unfinished(conn)
            if left == 0 or not pool.alive():
                break
            time.sleep(0.005)
    finished = time.perf_counter()
    time.sleep(0.3)  # a late duplicate gets the chance to show up before the workers stop
    reports, errors = pool.collect()
    seconds = finished - started
    checked = check_seqs([s for r in reports for s in r.seqs], n)
    counted = totals(args.dsn)
    summary = worker_summary(reports, pool.released_ns)
    errors += stats_problems(summary["worker_stats"])
    verified = (
        not errors
        and checked["missing"] == 0
        and checked["duplicates"] == 0
        and left == 0
        and counted["unfinished_after"] == 0
        and counted["succeeded_rows"] == n
        and counted["dead_letters"] == 0
    )
    return {
        "seconds": rounded(seconds, 4),
        "jobs_per_s": rounded(n / seconds, 1),
        "p50_ms": None,
        "p99_ms": None,
        "handlers_seconds": rounded(handlers_done - started, 4),
        "backlog_insert_s": rounded(insert_seconds, 3),
        **checked,
        **counted,
        **summary,
        "verified": verified,
        "errors": [e[-2000:] for e in errors[:3]],
    }


# ---------------------------------------------------------------------------------- latency


def produce_at_rate(dsn: str, m: int, rate: float) -> tuple[float, list[int], list[int]]:
    """Enqueue seqs 0..m-1 one per call at *rate*/s; return seconds, call and commit instants."""
    call_ns: list[int] = []
    commit_ns: list[int] = []
    with conveyor.connect(dsn, autocommit=True, application_name="conveyor-bench") as conn:
        started = time.perf_counter()
        for seq in range(m):
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            call_ns.append(time.monotonic_ns())
            jobs.enqueue(conn, KIND, {"seq": seq})
            commit_ns.append(time.monotonic_ns())
        return time.perf_counter() - started, call_ns, commit_ns


def scenario_latency(args: argparse.Namespace, plan: WorkerPlan) -> dict[str, Any]:
    """An idle worker; jobs enqueued one at a time; latency = commit acknowledged → handler."""
    m = round(args.rate * args.duration)
    reset(args.dsn, bridge=True)
    settle(args.dsn, vacuum=True)
    pool = WorkerPool(plan, args.processes)
    pool.start()
    pool.release()
    time.sleep(args.idle)  # the worker reaches its idle state
    seconds, call_ns, commit_ns = produce_at_rate(args.dsn, m, args.rate)
    pool.wait_for_handlers(m, time.perf_counter() + args.timeout)
    time.sleep(0.3)
    reports, errors = pool.collect()
    checked = check_seqs([s for r in reports for s in r.seqs], m)
    counted = totals(args.dsn)
    summary = worker_summary(reports, pool.released_ns)
    errors += stats_problems(summary["worker_stats"])
    first: dict[int, int] = {}
    for report in reports:
        for seq, at in zip(report.seqs, report.times_ns, strict=True):
            first[seq] = min(at, first.get(seq, at))
    latency = [(first[i] - commit_ns[i]) / 1e6 for i in range(m) if i in first]
    from_call = [(first[i] - call_ns[i]) / 1e6 for i in range(m) if i in first]
    enqueue_ms = [(commit_ns[i] - call_ns[i]) / 1e6 for i in range(m)]
    verified = (
        not errors
        and checked["missing"] == 0
        and checked["duplicates"] == 0
        and counted["unfinished_after"] == 0
        and counted["succeeded_rows"] == m
        and counted["dead_letters"] == 0
    )
    return {
        "seconds": rounded(seconds),
        "jobs_per_s": rounded(m / seconds, 1),
        "p50_ms": rounded(percentile(latency, 50)),
        "p99_ms": rounded(percentile(latency, 99)),
        "max_ms": rounded(max(latency) if latency else None),
        "min_ms": rounded(min(latency) if latency else None),
        "latency_of": "enqueue commit acknowledged -> handler start",
        "p50_from_call_ms": rounded(percentile(from_call, 50)),
        "p99_from_call_ms": rounded(percentile(from_call, 99)),
        "enqueue_call_p50_ms": rounded(percentile(enqueue_ms, 50)),
        **checked,
        **counted,
        **summary,
        "verified": verified,
        "errors": [e[-2000:] for e in errors[:3]],
    }


# ---------------------------------------------------------------------------------- main


def config_notes(args: argparse.Namespace) -> str:
    """The `config` column: every setting in conveyor's own terms."""
    if args.scenario == "enqueue":
        return (
            f"conveyor.jobs.enqueue_many, {args.batch} jobs per call, autocommit "
            f"(1 call = 1 transaction), {max(1, args.concurrency)} sync client(s), "
            "NOTIFY bridge off (default)"
        )
    if args.scenario == "enqueue1":
        return (
            "conveyor.jobs.enqueue, one autocommit call (= 1 transaction) per job, "
            "NOTIFY bridge off (default)"
        )
    if args.scenario == "install":
        return f"phases {', '.join(map(str, PHASES))} via conveyor.phases.runner"
    batch = "free slots (default)" if args.batch is None else str(args.batch)
    if args.scenario == "latency":
        wakeup = f"NOTIFY bridge on (LISTEN) + poll {args.poll_interval:g} s"
    else:
        wakeup = f"NOTIFY bridge off (default): polling, poll {args.poll_interval:g} s"
    return (
        f"{args.processes} proc x {args.concurrency} claim loop(s) x batch {batch} = "
        f"Worker(concurrency={worker_slots(args)} job slots, batch {batch}), "
        f"async no-op handler, completions flushed with "
        f"fn_job_complete_many, {wakeup}, phases 0-3, lease {args.lease_seconds} s, asyncio loop"
    )


def versions(dsn: str) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "conveyor": version("conveyor"),
        "psycopg": version("psycopg"),
    }
    try:
        with harness_connection(dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            found["postgres"] = str(row[0]) if row else "?"
    except psycopg.Error as error:
        found["postgres"] = f"unknown ({type(error).__name__})"
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{SYSTEM} benchmark adapter")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="WorkerConfig.concurrency (job slots)"
    )
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=None, help="WorkerConfig.batch (claim batch cap)"
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=None,
        help="WorkerConfig.concurrency directly (default: --concurrency x --batch)",
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=float, default=1.5)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--label", default=None)
    parser.add_argument(
        "--keys",
        type=int,
        default=0,
        help="drain: spread the backlog over this many concurrency keys (needs phase 8)",
    )
    defaults = WorkerConfig()
    parser.add_argument("--poll-interval", type=float, default=defaults.poll_interval)
    parser.add_argument("--lease-seconds", type=int, default=defaults.lease_seconds)
    args = parser.parse_args(argv)
    if args.scenario == "enqueue" and args.batch is None:
        args.batch = ENQUEUE_DEFAULT_BATCH
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen scenario; its answer holds the timing and verification keys."""
    if args.scenario == "install":
        failures = install(args.dsn)
        return {"seconds": 0, "jobs_per_s": None, "verified": True, "gate_failures": failures}
    if args.scenario in ("enqueue", "enqueue1"):
        return scenario_enqueue(args, single=args.scenario == "enqueue1")
    plan = WorkerPlan(
        dsn=args.dsn,
        concurrency=worker_slots(args),
        batch=args.batch,
        poll_interval=args.poll_interval,
        lease_seconds=args.lease_seconds,
    )
    if args.scenario == "drain":
        return scenario_drain(args, plan)
    return scenario_latency(args, plan)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: dict[str, Any] = {
        "system": SYSTEM,
        "label": args.label or SYSTEM,
        "scenario": args.scenario,
        "jobs": round(args.rate * args.duration) if args.scenario == "latency" else args.jobs,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "batch": 1 if args.scenario == "enqueue1" else args.batch,
        "p50_ms": None,
        "p99_ms": None,
        "extra": {"poll_interval": args.poll_interval, "lease_seconds": args.lease_seconds},
    }
    try:
        out.update(run(args))
    except Exception as error:
        traceback.print_exc()
        out.update(
            {
                "verified": False,
                "error": f"{type(error).__name__}: {error}",
                "seconds": None,
                "jobs_per_s": None,
            }
        )
    out["config"] = config_notes(args)
    out["versions"] = versions(args.dsn)
    print(json.dumps(out), flush=True)
    return 0 if out.get("verified") else 2


if __name__ == "__main__":
    sys.exit(main())
