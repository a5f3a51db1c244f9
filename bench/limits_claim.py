#!/usr/bin/env python3
"""The limited claim alone, keyed: fn_job_claim(batch => 32) then a completion by UPDATE, in one
transaction, on a backlog spread over --keys concurrency keys, without a limit, with a queue cap
far above (keys taken in turn) and with a cap of every key far above. First on one connection
(median ms a claim), then on --connections connections at once, back to back (jobs/s, and rows
a claim: claims running at once must not take each other's rows). No worker, no work between
claims: what limited claims cost, and what waiting on the queue's limit row costs them.

Usage:

    .venv/bin/python bench/limits_claim.py --dsn postgresql://bench:bench@127.0.0.1:5432/postgres
    .venv/bin/python bench/limits_claim.py --dsn … --keys 0 --calls 200 --connections 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import LiteralString

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.limits, as mypy names it
from bench.limits import CLEAR, KEYED, backlog, claim_ids, finish, scratch

BATCH = 32
LIMITS: dict[str, LiteralString | None] = {
    "no limit": None,
    "cap": KEYED["keys+cap"],
    "key cap": KEYED["keys+keycap"],
}


def run(dsn: str, limit: LiteralString | None, keys: int, calls: int, connections: int) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CLEAR)
        conn.execute("TRUNCATE conveyor.job_queue")
        count = BATCH * calls * connections + 2000
        backlog(conn, "default", count, key="k" if keys else None, keys=max(keys, 1))
        conn.execute("VACUUM ANALYZE conveyor.job_queue")
        if limit is not None:
            conn.execute(limit)
    took: list[float] = []
    rows: list[int] = []

    def claims() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n in range(calls):
                started = time.perf_counter()
                with conn.transaction():
                    ids = claim_ids(conn, BATCH)
                    finish(conn, ids)
                if n >= min(20, calls // 2):  # past the plan cache's first calls
                    took.append(time.perf_counter() - started)
                rows.append(len(ids))

    threads = [threading.Thread(target=claims) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return (
        f"median {statistics.median(took) * 1000:6.3f} ms  rows a claim"
        f" {statistics.mean(rows):5.1f}  {sum(rows) / wall:8,.0f} jobs/s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a server role that may create databases")
    parser.add_argument("--keys", type=int, default=100, help="keys of the backlog; 0: none")
    parser.add_argument("--calls", type=int, default=200, help="claims per connection")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.calls < 4:
        parser.error(f"--calls is {args.calls}; it must be at least 4")
    with scratch(args.dsn, (0, 1, 2, 3, 4, 8), "claim") as dsn:
        for connections in (1, args.connections):
            calls = args.calls if connections == 1 else args.calls // 2
            print(f"{args.keys} keys, {connections} connection(s) x {calls} claims:", flush=True)
            for _ in range(args.rounds):
                for name, limit in LIMITS.items():
                    line = run(dsn, limit, args.keys, calls, connections)
                    print(f"  {name:<9} {line}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except psycopg.OperationalError as error:  # a server that is not there: one line, not a trace
        sys.exit(
            f"bench/limits_claim.py: cannot use the database: {str(error).strip().splitlines()[0]}"
        )
