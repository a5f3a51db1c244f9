#!/usr/bin/env python3
"""Phase 6 workflow bench: 10,000-step fan-out and fan-in, release overhead vs plain jobs, and
1,000 six-step cut pipelines through 2 workers, on a scratch database of the given server.

    .venv/bin/python bench/workflow.py --data-dir /tmp/bench-workflow      # embedded server
    .venv/bin/python bench/workflow.py --dsn postgresql://postgres@host:port/postgres

Measured (median of --reps where repeated):
  * emit: fn_mot_graph_emit of a 10,001-step graph (1 → 10,000 and 10,000 → 1), one transaction;
  * drain: emit committed → workflow succeeded, with 2 `conveyor worker` processes running a
    no-op handler (the clock includes the workers' claim/complete round trips and polling);
  * release overhead: one connection claims 100 jobs and completes them with one
    fn_job_complete_many, until the graph is done; the same for 10,001 plain jobs (both after
    an untimed ANALYZE). The difference per job is what being a workflow step costs (step
    bookkeeping + release);
  * pipelines: 1,000 emits of staging.cut_pipeline (6 steps, the approval an operator step)
    through 2 workers; a stand-in operator thread completes each approval as soon as it is
    queued. workflows/s over the run, p50/p99 of created_at → finished_at. First all 1,000 in
    one transaction (a full backlog: throughput), then one emit at a time at --paced-rate
    (default 30/s: latency below saturation).
The workers poll every --poll-interval s: a released step is an UPDATE, which the NOTIFY bridge
does not announce, so each hop of a chain waits up to one poll.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.workflow_setup import (
    HERE,
    Conn,
    Workers,
    as_url,
    install,
    reset,
    scalar,
    scratch,
    wait_drained,
    wait_settled,
    wait_workers_ready,
)


def emit_timed(conn: Conn, template: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    answer = scalar(conn, "SELECT conveyor.fn_mot_graph_emit(%s)", (template,))
    seconds = time.perf_counter() - t0
    assert answer.get("ok"), answer
    return int(answer["workflow_id"]), seconds


def drain_one_connection(conn: Conn) -> float:
    """Claim 100, complete them in one call, until nothing is queued; seconds taken."""
    t0 = time.perf_counter()
    while True:
        jobs = scalar(
            conn, "SELECT conveyor.fn_job_claim('bench', batch => 100, lease_seconds => 600)"
        )["jobs"]
        if not jobs:
            break
        answer = scalar(
            conn,
            "SELECT conveyor.fn_job_complete_many(%s, %s)",
            ([j["job_id"] for j in jobs], [j["lease_token"] for j in jobs]),
        )
        assert not answer["lease_lost"], answer
    return time.perf_counter() - t0


def release_overhead(url: str, reps: int) -> dict[str, Any]:
    plain: list[float] = []
    shapes: dict[str, list[float]] = {"bench.fan_out": [], "bench.fan_in": []}
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(reps):
            reset(conn)
            conn.execute(
                "SELECT conveyor.fn_job_enqueue_many(%s)",
                (Jsonb([{"kind": "bench.step", "payload": {}} for _ in range(10_001)]),),
            )
            conn.execute("ANALYZE conveyor.job_queue")
            plain.append(drain_one_connection(conn))
            for template, runs in shapes.items():
                reset(conn)
                workflow, _ = emit_timed(conn, template)
                conn.execute("ANALYZE conveyor.job_queue, conveyor.job_workflow_step")
                runs.append(drain_one_connection(conn))
                status = scalar(
                    conn, "SELECT status FROM conveyor.job_workflow WHERE id = %s", (workflow,)
                )
                assert status == "succeeded", status
    base = statistics.median(plain)
    result: dict[str, Any] = {"plain_10001_jobs_s": round(base, 3)}
    for template, runs in shapes.items():
        median = statistics.median(runs)
        result[f"{template}_s"] = round(median, 3)
        result[f"{template}_overhead_us_per_step"] = round((median - base) / 10_001 * 1e6, 1)
    result["plain_us_per_job"] = round(base / 10_001 * 1e6, 1)
    return result


def graph_drains(url: str, reps: int, poll: float) -> dict[str, Any]:
    """Emit (or, for bench.plain, enqueue 10,001 plain jobs) with the 2 workers running; the
    clock runs from just before the emit to the last step's end."""
    results: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for template in ("bench.plain", "bench.fan_out", "bench.fan_in"):
            emits: list[float] = []
            drains: list[float] = []
            for _ in range(reps):
                reset(conn)
                workers = Workers(url, poll)
                try:
                    wait_workers_ready(conn)
                    t0 = time.perf_counter()
                    if template == "bench.plain":
                        conn.execute(
                            "SELECT conveyor.fn_job_enqueue_many(%s)",
                            (Jsonb([{"kind": "bench.step", "payload": {}}] * 10_001),),
                        )
                        emits.append(time.perf_counter() - t0)
                        wait_drained(conn)
                    else:
                        workflow, emit_s = emit_timed(conn, template)
                        emits.append(emit_s)
                        wait_settled(conn, [workflow])
                        status = scalar(
                            conn,
                            "SELECT status FROM conveyor.job_workflow WHERE id = %s",
                            (workflow,),
                        )
                        assert status == "succeeded", status
                    drains.append(time.perf_counter() - t0)
                finally:
                    workers.stop()
            results[template] = {
                "emit_s": round(statistics.median(emits), 3),
                "drain_s": round(statistics.median(drains), 3),
                "steps_per_s": round(10_001 / statistics.median(drains)),
            }
    return results


def operator(url: str, stop: threading.Event, approved: list[int]) -> None:
    """Approves every queued approve step as soon as it sees it (a very fast person): one
    statement completes all approvals queued at that moment, each through
    fn_job_workflow_complete_step."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT st.workflow_id, conveyor.fn_job_workflow_complete_step("
                "           st.workflow_id, 'approve', 'bench')"
                "  FROM conveyor.job_workflow_step AS st"
                "  JOIN conveyor.job_queue AS jq ON jq.id = st.job_id"
                " WHERE jq.queue = 'operator' AND jq.status = 'queued' AND st.step_key = 'approve'"
            ).fetchall()
            approved.extend(int(w) for w, answer in rows if answer.get("ok"))
            if not rows:
                time.sleep(0.005)


def pipelines(url: str, count: int, poll: float, rate: float) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        reset(conn)
        workers = Workers(url, poll)
        stop = threading.Event()
        approved: list[int] = []
        person = threading.Thread(target=operator, args=(url, stop, approved), daemon=True)
        try:
            wait_workers_ready(conn)
            person.start()
            ids: list[int] = []
            if rate == 0:  # one transaction emits them all: the workers find a full backlog
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT (conveyor.fn_mot_graph_emit('staging.cut_pipeline',"
                        " params => jsonb_build_object('record_id', g)) ->> 'workflow_id')::bigint"
                        " FROM generate_series(1, %s) AS g",
                        (count,),
                    )
                ]
            t0 = time.perf_counter()
            for i in range(count if rate > 0 else 0):
                time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                answer = scalar(
                    conn,
                    "SELECT conveyor.fn_mot_graph_emit('staging.cut_pipeline', params => %s)",
                    (Jsonb({"record_id": i}),),
                )
                ids.append(int(answer["workflow_id"]))
            wait_settled(conn, ids)
        finally:
            stop.set()
            if person.is_alive():
                person.join(timeout=30)
            workers.stop()
        rows = conn.execute(
            "SELECT status, created_at, finished_at FROM conveyor.job_workflow WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
    assert all(r[0] == "succeeded" for r in rows), {r[0] for r in rows}
    assert len(set(approved)) == count
    started: datetime = min(r[1] for r in rows)
    finished: datetime = max(r[2] for r in rows)
    latencies = sorted((r[2] - r[1]).total_seconds() for r in rows)
    return {
        "workflows": count,
        "offered_rate_per_s": rate or "all at once",
        "workflows_per_s": round(count / (finished - started).total_seconds(), 1),
        "steps_per_s": round(6 * count / (finished - started).total_seconds(), 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


def pgboss(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same fan-out and fan-in with pg-boss flow() on a scratch database of the same server."""
    name = f"pgboss_workflow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        done = subprocess.run(
            [
                args.node,
                str(HERE / "workflow_pgboss.mjs"),
                "--dsn",
                as_url(scratch(dsn, name)),
                "--reps",
                str(args.reps),
            ],
            env={**os.environ, "PGBOSS_NODE_MODULES": str(args.pgboss_modules)},
            capture_output=True,
            text=True,
            timeout=1800,
            check=True,
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--data-dir", type=Path, default=None, help="embedded server (no --dsn)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0, help="pipelines/s (0: all at once)")
    parser.add_argument(
        "--paced-rate", type=float, default=30.0, help="after a backlog run: again at this rate"
    )
    parser.add_argument("--poll-interval", type=float, default=0.02)
    parser.add_argument(
        "--pgboss-modules",
        type=Path,
        default=None,
        help="node_modules with pg-boss and pg: compare",
    )
    parser.add_argument("--node", default="node", help="node >= 22.12 (for --pgboss-modules)")
    args = parser.parse_args()
    server = None
    dsn = args.dsn
    if dsn is None:
        from conveyor.embedded import EmbeddedServer

        server = EmbeddedServer(args.data_dir or Path("/tmp/conveyor-bench-workflow"))
        server.start()
        dsn = server.dsn
    name = f"conveyor_workflow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = scratch(dsn, name)
    try:
        install(url)
        result: dict[str, Any] = {"release": release_overhead(url, args.reps)}
        result["drain"] = graph_drains(url, args.reps, args.poll_interval)
        result["pipelines"] = pipelines(url, args.pipelines, args.poll_interval, args.rate)
        if args.rate == 0 and args.paced_rate > 0:
            result["pipelines_paced"] = pipelines(
                url, args.pipelines, args.poll_interval, args.paced_rate
            )
        result["poll_interval_s"] = args.poll_interval
        if args.pgboss_modules is not None:
            result["pgboss"] = pgboss(dsn, args)
            for shape in ("plain", "fan_out", "fan_in"):
                ours = result["drain"][f"bench.{shape}"]["drain_s"]
                result["pgboss"][shape]["drain_ratio_pgboss_over_conveyor"] = round(
                    result["pgboss"][shape]["drain_s"] / ours, 2
                )
        print(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
