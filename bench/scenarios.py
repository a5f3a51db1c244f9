#!/usr/bin/env python3
"""conveyor-only drain scenarios the side-by-side harness does not cover.

- ``backlog``: drain rate of the first N jobs out of a large ready backlog (default 1,000,000)
  against the same N out of a backlog of exactly N and out of a small backlog (default 10,000):
  the claim cost must not grow with the backlog.
- ``retained``: drain N jobs with a large number (default 1,000,000) of ``succeeded`` rows kept
  for retention in ``conveyor.job_queue`` (inserted set-based as the table owner: bench setup,
  not the API), against the same drain with none.
- ``mixed``: N jobs spread over 20 queues with mixed priorities, one worker set listening on all
  20, against N jobs in the default queue at priority 0.
- ``rss``: peak RSS (``VmHWM``) of worker processes at concurrency 100 while draining, with an
  async and with a plain (thread-pool) no-op handler.

Workers, timing and verification come from ``adapter.py`` beside this file (same worker
processes as the harness rows). One JSON line per measurement on stdout, progress on stderr,
and a readable table at the end. Usage::

    .venv/bin/python bench/scenarios.py --dsn postgresql://bench:bench@127.0.0.1:5432/conveyor_bench
    .venv/bin/python bench/scenarios.py --dsn … --only backlog --big 200000 --reps 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, LiteralString

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench import adapter  # the adapter beside this file (bench/ is a namespace package)

import conveyor
from conveyor import jobs

QUEUES = tuple(f"q{i:02d}" for i in range(20))
PRIORITIES = (-5, 0, 0, 0, 1, 5, 10)

RETAINED_SQL: LiteralString = """
    INSERT INTO conveyor.job_queue
           (queue, kind, payload, priority, status, run_at, attempts, created_at, started_at,
            finished_at)
    SELECT 'default', 'bench.noop', jsonb_build_object('seq', -1, 'old', g), 0, 'succeeded',
           t, 1, t, t, t + interval '5 ms'
      FROM generate_series(1, %s) AS g,
           LATERAL (SELECT now() - interval '1 day' + g * interval '50 ms') AS x(t)
"""
SUCCEEDED_SQL: LiteralString = """
    SELECT count(*) FROM conveyor.job_queue AS jq
     WHERE jq.status = 'succeeded' AND jq.payload->>'seq' <> '-1'
"""


def log(message: str) -> None:
    print(f"[scenarios {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


RESTART_HINTS = ("starting up", "shutting down", "terminat", "server closed", "connection")


def wait_for_server(dsn: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with adapter.harness_connection(dsn) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            time.sleep(1.0)


def attempt(
    dsn: str, label: str, measure: Callable[[], dict[str, Any]], tries: int = 3
) -> dict[str, Any]:
    """Run *measure*; repeat it (up to *tries*) when the server went away under it.

    The machine's PostgreSQL is shared with fault-injection tests that restart it: a run that
    failed because of a restart is measured again and the line says how many tries it took.
    """
    result: dict[str, Any] = {}
    for number in range(1, tries + 1):
        try:
            result = measure()
        except psycopg.OperationalError as error:
            result = {"verified": False, "errors": [f"OperationalError: {error}"]}
        text = " ".join(str(e) for e in result.get("errors", [])).lower()
        if result.get("verified") or not any(h in text for h in RESTART_HINTS):
            result["tries"] = number
            return result
        log(f"{label}: server went away ({text[:120]}); try {number + 1}/{tries}")
        time.sleep(2.0)
        wait_for_server(dsn)
    result["tries"] = tries
    return result


# ---------------------------------------------------------------------------------- setup


def reset(dsn: str) -> None:
    adapter.reset(dsn)


def enqueue_seqs(
    dsn: str,
    n: int,
    chunk: int = 5000,
    item: Callable[[int], dict[str, Any]] = adapter.job,
) -> float:
    """Enqueue seqs 0..n-1 with enqueue_many, *chunk* per call; progress on stderr."""
    started = time.perf_counter()
    with conveyor.connect(dsn, autocommit=True, application_name="conveyor-bench") as conn:
        for first in range(0, n, chunk):
            jobs.enqueue_many(conn, [item(s) for s in range(first, min(first + chunk, n))])
            done = min(first + chunk, n)
            if n >= 100_000 and done % 100_000 == 0:
                elapsed = time.perf_counter() - started
                log(f"enqueued {done:,}/{n:,} ({done / elapsed:,.0f} jobs/s)")
    return time.perf_counter() - started


def insert_retained(dsn: str, rows: int) -> float:
    started = time.perf_counter()
    with adapter.harness_connection(dsn) as conn:
        conn.execute(RETAINED_SQL, (rows,))
    seconds = time.perf_counter() - started
    log(f"inserted {rows:,} succeeded rows in {seconds:.1f} s")
    return seconds


# ---------------------------------------------------------------------------------- drain


def plan_for(args: argparse.Namespace, **overrides: Any) -> adapter.WorkerPlan:
    fields: dict[str, Any] = {
        "dsn": args.dsn,
        "concurrency": args.slots,
        "batch": args.batch,
        "poll_interval": 0.5,
        "lease_seconds": 30,
    }
    fields.update(overrides)
    return adapter.WorkerPlan(**fields)


def vm_kb(pid: int, key: str) -> int | None:
    """A VmRSS/VmHWM line of /proc/<pid>/status, in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def drain(
    dsn: str,
    plan: adapter.WorkerPlan,
    processes: int,
    n: int,
    backlog: int,
    retained: int,
    marks: Sequence[int] = (),
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Release the workers on a prepared queue; time the first *n* handlers.

    With ``backlog == n`` the clock stops, as in the harness, when conveyor's tables hold no
    unfinished job; with a bigger backlog it stops when *n* handlers have started (the rest
    stays queued). ``marks`` also records the seconds to reach each of those handler counts.
    """
    pool = adapter.WorkerPool(plan, processes)
    pool.start()
    pids = [p.pid for p in pool.processes if p.pid is not None]
    rss_ready = [vm_kb(pid, "VmRSS") for pid in pids]
    started = time.perf_counter()
    pool.release()
    deadline = started + timeout
    reached: dict[int, float] = {}
    targets = sorted(set(marks) | {n})
    while time.perf_counter() < deadline and pool.alive():
        count = pool.handlers_started()
        now = time.perf_counter()
        for target in targets:
            if target not in reached and count >= target:
                reached[target] = now - started
        if count >= n:
            break
        time.sleep(0.002)
    left = -1
    if backlog == n:
        with adapter.harness_connection(dsn) as conn:
            while time.perf_counter() < deadline:
                left = adapter.unfinished(conn)
                if left == 0 or not pool.alive():
                    break
                time.sleep(0.005)
    finished = time.perf_counter()
    hwm = [vm_kb(pid, "VmHWM") for pid in pids]
    time.sleep(0.3)
    reports, errors = pool.collect()
    seqs = [s for r in reports for s in r.seqs]
    checked = adapter.check_seqs([s for s in seqs if s < n], n)
    summary = adapter.worker_summary(reports, pool.released_ns)
    errors += adapter.stats_problems(summary["worker_stats"])
    with adapter.harness_connection(dsn) as conn:
        row = conn.execute(SUCCEEDED_SQL).fetchone()
        succeeded = int(row[0]) if row else -1
        still = adapter.unfinished(conn)
    seconds = finished - started
    verified = (
        not errors
        and checked["missing"] == 0
        and checked["duplicates"] == 0
        and len(seqs) == len(set(seqs))
        and (left == 0 if backlog == n else True)
        and still == backlog - succeeded
    )
    return {
        "seconds": adapter.rounded(seconds, 4),
        "jobs_per_s": adapter.rounded(n / seconds, 1),
        "marks": {str(k): adapter.rounded(v, 4) for k, v in sorted(reached.items())},
        "mark_rates": {str(k): adapter.rounded(k / v, 1) for k, v in sorted(reached.items())},
        "executed_total": len(seqs),
        **checked,
        "succeeded_rows": succeeded,
        "unfinished_after": still,
        "rss_ready_kb": rss_ready,
        "vm_hwm_kb": hwm,
        **summary,
        "verified": verified,
        "errors": [e[-2000:] for e in errors[:3]],
    }


def settle(dsn: str) -> None:
    started = time.perf_counter()
    adapter.settle(dsn, vacuum=True)
    log(f"VACUUM ANALYZE + CHECKPOINT {time.perf_counter() - started:.1f} s")


# ---------------------------------------------------------------------------------- scenarios


def emit(line: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    rows.append(line)
    print(json.dumps(line), flush=True)
    rate = line.get("jobs_per_s")
    log(f"{line['label']}: {rate} jobs/s, verified={line.get('verified')}")


def base(args: argparse.Namespace, scenario: str, label: str, **extra: Any) -> dict[str, Any]:
    return {
        "system": "conveyor",
        "scenario": scenario,
        "label": label,
        "processes": args.processes,
        "slots": args.slots,
        "batch": args.batch,
        "config": (
            f"{args.processes} proc x Worker(concurrency={args.slots}, batch {args.batch}), "
            "async no-op handler, NOTIFY bridge off (polling 0.5 s), phases 0-3"
        ),
        "p50_ms": None,
        "p99_ms": None,
        **extra,
    }


def run_backlog(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    n = args.n
    for rep in range(args.reps):
        for backlog in (args.small, n, args.big):
            measured = min(n, backlog)
            label = f"backlog {backlog:,}: first {measured:,}"

            def measure(
                backlog: int = backlog, measured: int = measured, rep: int = rep
            ) -> dict[str, Any]:
                reset(args.dsn)
                log(f"backlog {backlog:,} (rep {rep + 1}): enqueueing")
                insert_s = enqueue_seqs(args.dsn, backlog)
                settle(args.dsn)
                marks = [m for m in (args.small, n) if m <= measured]
                plan = plan_for(args)
                result = drain(args.dsn, plan, args.processes, measured, backlog, 0, marks)
                result["enqueue_s"] = round(insert_s, 2)
                result["enqueue_jobs_per_s"] = round(backlog / insert_s, 1)
                return result

            result = attempt(args.dsn, label, measure)
            line = base(args, "backlog", label, backlog=backlog, jobs=measured, rep=rep + 1)
            emit(line | result, rows)


def run_retained(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    n = args.n
    for rep in range(args.reps):
        for retained in (0, args.big):
            label = f"drain {n:,}, {retained:,} succeeded rows retained"

            def measure(retained: int = retained) -> dict[str, Any]:
                reset(args.dsn)
                if retained:
                    insert_retained(args.dsn, retained)
                insert_s = enqueue_seqs(args.dsn, n)
                settle(args.dsn)
                result = drain(args.dsn, plan_for(args), args.processes, n, n, retained)
                result["enqueue_s"] = round(insert_s, 2)
                return result

            result = attempt(args.dsn, label, measure)
            line = base(args, "retained", label, retained=retained, jobs=n, rep=rep + 1)
            emit(line | result, rows)


def mixed_item(rng: random.Random) -> Callable[[int], dict[str, Any]]:
    def item(seq: int) -> dict[str, Any]:
        return {
            "kind": adapter.KIND,
            "payload": {"seq": seq},
            "queue": rng.choice(QUEUES),
            "priority": rng.choice(PRIORITIES),
        }

    return item


def run_mixed(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    n = args.n
    for rep in range(args.reps):
        for mixed in (False, True):
            label = (
                f"drain {n:,}, 20 queues, priorities {sorted(set(PRIORITIES))}"
                if mixed
                else f"drain {n:,}, 1 queue, priority 0"
            )

            def measure(mixed: bool = mixed, rep: int = rep) -> dict[str, Any]:
                reset(args.dsn)
                item = mixed_item(random.Random(rep)) if mixed else adapter.job
                insert_s = enqueue_seqs(args.dsn, n, item=item)
                settle(args.dsn)
                plan = plan_for(args, queues=QUEUES if mixed else None)
                result = drain(args.dsn, plan, args.processes, n, n, 0)
                result["enqueue_s"] = round(insert_s, 2)
                return result

            result = attempt(args.dsn, label, measure)
            emit(base(args, "mixed", label, jobs=n, rep=rep + 1) | result, rows)


def run_rss(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    n = args.n
    for sync in (False, True):
        handler = "plain def (thread pool)" if sync else "async def"
        label = f"RSS, 1 proc x concurrency 100, {handler}"

        def measure(sync: bool = sync) -> dict[str, Any]:
            reset(args.dsn)
            enqueue_seqs(args.dsn, n)
            settle(args.dsn)
            plan = plan_for(args, concurrency=100, batch=None, sync_handler=sync)
            return drain(args.dsn, plan, 1, n, n, 0)

        line = base(args, "rss", label, jobs=n) | attempt(args.dsn, label, measure)
        line["config"] = (
            f"1 proc x Worker(concurrency=100, batch = free slots), {handler} no-op handler, "
            "NOTIFY bridge off, phases 0-3"
        )
        line["processes"], line["slots"], line["batch"] = 1, 100, None
        emit(line, rows)


# ---------------------------------------------------------------------------------- report


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(rows: list[dict[str, Any]]) -> str:
    """Median jobs/s per label (and VmHWM for the RSS rows), with the verification count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["label"]), []).append(row)
    out = [f"{'scenario':<9} {'measurement':<58} {'jobs/s med':>10} {'min-max':>15} ok", "-" * 99]
    for (scenario, label), group in groups.items():
        rates = [float(r["jobs_per_s"]) for r in group if r.get("jobs_per_s") is not None]
        ok = sum(1 for r in group if r.get("verified"))
        median = med(rates)
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}" if rates else "-"
        text = f"{median:,.0f}" if median is not None else "-"
        out.append(f"{scenario:<9} {label:<58} {text:>10} {spread:>15} {ok}/{len(group)}")
        if scenario == "backlog":
            first = [
                float(rate)
                for r in group
                for mark, rate in r.get("mark_rates", {}).items()
                if int(mark) == r["jobs"] and rate is not None
            ]
            if first:
                out.append(
                    f"{'':<9}   handler-start rate of the first {group[0]['jobs']:,}:"
                    f" {statistics.median(first):,.0f} jobs/s (median)"
                )
        if scenario == "rss":
            hwm = [kb for r in group for kb in r.get("vm_hwm_kb", []) if kb]
            ready = [kb for r in group for kb in r.get("rss_ready_kb", []) if kb]
            out.append(
                f"{'':<9}   VmHWM {max(hwm) / 1024 if hwm else 0:.1f} MB"
                f" (RSS when ready {max(ready) / 1024 if ready else 0:.1f} MB)"
            )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", required=True, help="database to use (its jobs are truncated)")
    parser.add_argument("--only", default="backlog,retained,mixed,rss")
    parser.add_argument("--n", type=int, default=20000, help="jobs measured per drain")
    parser.add_argument("--small", type=int, default=10000, help="small backlog")
    parser.add_argument("--big", type=int, default=1_000_000, help="big backlog / retained rows")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=200, help="WorkerConfig.concurrency")
    parser.add_argument("--batch", type=int, default=100, help="WorkerConfig.batch")
    args = parser.parse_args(argv)

    failures = adapter.install(args.dsn)
    if failures:
        log(f"install gate failures: {failures}")
    runners = {"backlog": run_backlog, "retained": run_retained, "mixed": run_mixed, "rss": run_rss}
    rows: list[dict[str, Any]] = []
    for name in args.only.split(","):
        runners[name.strip()](args, rows)
    reset(args.dsn)
    print("\n" + table(rows), file=sys.stderr, flush=True)
    return 0 if all(r.get("verified") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
