#!/usr/bin/env python3
"""enqueue_many throughput with two versions of the validation helper, interleaved in one database.

    .venv/bin/python bench/enqueue_many.py --dsn postgresql://USER@HOST:PORT/postgres \
        --base /tmp/base/src/conveyor/sql/functions/fn_job__enqueue_problem.1.sql

On a scratch database (phases 0–1, substrate on, dropped at the end) it installs each version of
`fn_job__enqueue_problem` in turn (this checkout's file and --base), each round on a fresh
connection, and measures: `jobs.enqueue_many` of --batch jobs per call (autocommit: one call is
one transaction), median ms per call over --calls calls after a warm-up; and the helper's server
time per row (EXPLAIN ANALYZE of a 10,000-row set query). Rounds alternate which version goes
first. Prints one JSON line per round and a summary line with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor import db, jobs
from conveyor.phases import runner

HERE = Path(__file__).resolve().parent.parent
HELPER = HERE / "src/conveyor/sql/functions/fn_job__enqueue_problem.1.sql"
SIGNATURE = (
    "conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric,"
    " integer, integer)"
)
SET_QUERY = """
    EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)
    SELECT count(*) FROM generate_series(1, 10000) AS g
     CROSS JOIN LATERAL (SELECT conveyor.fn_job__enqueue_problem('bench.noop',
            jsonb_build_object('seq', g), 'bench', 5, now(), 'k' || g, 3, 262144, 32) AS p) AS x
     WHERE x.p IS NOT NULL
"""


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def install(url: str, path: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(path.read_text())
        conn.execute(f"ALTER FUNCTION {SIGNATURE} OWNER TO conveyor_admin")


def measure(url: str, batch: int, calls: int) -> dict[str, float]:
    items = [{"kind": "bench.noop", "queue": "bench", "payload": {"seq": n}} for n in range(batch)]
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(8):  # warm-up past plpgsql's first plans
            jobs.enqueue_many(conn, items)
        spent = []
        for _ in range(calls):
            start = time.perf_counter()
            jobs.enqueue_many(conn, items)
            spent.append(time.perf_counter() - start)
        rows = [conn.execute(SET_QUERY).fetchone() for _ in range(5)]
        conn.execute("TRUNCATE conveyor.job_queue")
    server = statistics.median(r[0][0]["Execution Time"] for r in rows if r is not None) / 10
    ms = statistics.median(spent) * 1e3
    return {"ms_per_call": round(ms, 2), "jobs_per_s": round(batch / ms * 1e3, 1),
            "helper_us_per_row": round(server, 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--base", type=Path, required=True, help="the other helper's file")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    admin_dsn = args.dsn or db.resolve_url()
    name = f"conveyor_em_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = scratch(admin_dsn, name)
    results: dict[str, list[dict[str, float]]] = {"this": [], "base": []}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for number in (0, 1):
                runner.ratify(conn, number, "bench")
                runner.apply(conn, number, "bench")
            conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
        versions = {"this": HELPER, "base": args.base}
        for number in range(args.rounds):
            for label in ("this", "base") if number % 2 == 0 else ("base", "this"):
                install(url, versions[label])
                row: dict[str, Any] = {"round": number, "version": label}
                row |= measure(url, args.batch, args.calls)
                row["load_1m"] = round(os.getloadavg()[0], 2)
                results[label].append(row)
                print(json.dumps(row), flush=True)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.stop_embedded()
    ratio = statistics.median(
        b["ms_per_call"] / t["ms_per_call"]
        for t, b in zip(results["this"], results["base"], strict=True)
    )
    summary = {
        "scenario": "enqueue_many_validation",
        "batch": args.batch,
        **{
            f"{label}_{key}": statistics.median(r[key] for r in rows)
            for label, rows in results.items()
            for key in ("jobs_per_s", "helper_us_per_row")
        },
        "this_over_base_rate": round(ratio, 3),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
