#!/usr/bin/env python3
"""No-op drain throughput through a transaction-pooling PgBouncer vs straight to the server, in
the same run: the same database, the same settings, the runs interleaved (direct, pooled, …).

Each run is one ``adapter.py --scenario drain`` (see bench/README.md), once with the server's URL
and once with PgBouncer's. PgBouncer (Debian's package) is started on a free loopback port by
the test suite's fixture code (tests/scaleout/pgbouncer.py), ``pool_mode = transaction``; the
server is an embedded PostgreSQL in a temporary directory unless --dsn names one. Usage:

    .venv/bin/python bench/pgbouncer.py                       # 20,000 jobs, 1 × 20 slots, 3 reps
    .venv/bin/python bench/pgbouncer.py --slots 64 --batch 32 --reps 5
    .venv/bin/python bench/pgbouncer.py --dsn postgresql://bench:bench@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ is a namespace package
sys.path.insert(0, str(ROOT / "tests"))  # the PgBouncer fixture code

from bench.drain import Measurement, Setting, install, measure, median_rate  # noqa: E402

from scaleout.pgbouncer import PgBouncer, available  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="database to use (its jobs are truncated)")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--slots", type=int, default=20, help="WorkerConfig.concurrency")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer default_pool_size")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if not available():
        sys.exit("pgbouncer is not installed: apt-get install -y pgbouncer")

    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-pgbouncer-", dir="/tmp"))
    work.chmod(0o755)  # the server and pgbouncer run as an unprivileged user under root
    server = None
    try:
        dsn = args.dsn
        if dsn is None:
            from conveyor.embedded import EmbeddedServer

            server = EmbeddedServer(work / "pgdata")
            server.start()
            dsn = server.dsn
        bouncer = PgBouncer(dsn, work / "pgbouncer", pool_size=args.pool_size)
        bouncer.start()
        try:
            return run(args, dsn, bouncer.url_for(dsn))
        finally:
            bouncer.stop()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, direct: str, pooled: str) -> int:
    install(direct)
    setting = Setting(args.processes, args.slots, args.batch)
    rows: dict[str, list[Measurement]] = {"direct": [], "pgbouncer": []}
    for rep in range(args.reps):
        for route, url in (("direct", direct), ("pgbouncer", pooled)):
            row = measure(url, setting, args.jobs, args.timeout)
            rows[route].append(row)
            rate = f"{row.jobs_per_s:,.0f} jobs/s" if row.jobs_per_s else "-"
            status = "verified" if row.verified else f"NOT verified: {row.error}"
            print(f"rep {rep + 1} {route:<9} {setting}: {rate} ({status})", flush=True)
    summary = {
        "jobs": args.jobs,
        "setting": str(setting),
        "pool_size": args.pool_size,
        "median_jobs_per_s": {route: median_rate(found) for route, found in rows.items()},
        "all_verified": all(r.verified for found in rows.values() for r in found),
    }
    print(json.dumps(summary))
    return 0 if summary["all_verified"] else 2


if __name__ == "__main__":
    sys.exit(main())
