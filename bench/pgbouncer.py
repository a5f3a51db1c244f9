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
import os
import resource
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

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
            assert bouncer.process is not None
            return run(args, dsn, bouncer.url_for(dsn), bouncer.process.pid)
        finally:
            bouncer.stop()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, with_children: bool = False) -> float:
    """CPU seconds of *pid* (user + system; plus its waited-for children's with_children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime: exited backends
    return used / TICKS


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the server: the postmaster, its live children and those that exited."""
    total = process_cpu(postmaster, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                total += process_cpu(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def postmaster_pid(dsn: str) -> int | None:
    """The server's postmaster pid when it runs on this machine (its postmaster.pid), else None."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    try:
        return int((Path(str(row[0] if row else "")) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class Cpu:
    client: float  # the adapter and its worker processes (includes the untimed enqueue)
    server: float | None
    pgbouncer: float | None
    wal_bytes: int  # WAL the run wrote (enqueue, claim, complete; TRUNCATE and CHECKPOINT)


def wal_position(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0] if row else "0/0")


def wal_since(dsn: str, start: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)).fetchone()
    return int(row[0] if row else 0)


def measured(
    url: str,
    setting: Setting,
    args: argparse.Namespace,
    postmaster: int | None,
    bouncer: int,
    direct: str,
) -> tuple[Measurement, Cpu]:
    """One drain run and the CPU seconds each party spent on it."""
    wal = wal_position(direct)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server_cpu(postmaster) if postmaster else None
    bouncer_before = process_cpu(bouncer)
    row = measure(url, setting, args.jobs, args.timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    server = server_cpu(postmaster) - server_before if postmaster and server_before else None
    used = Cpu(client, server, process_cpu(bouncer) - bouncer_before, wal_since(direct, wal))
    return row, used


def run(args: argparse.Namespace, direct: str, pooled: str, bouncer: int) -> int:
    install(direct)
    postmaster = postmaster_pid(direct)
    setting = Setting(args.processes, args.slots, args.batch)
    rows: dict[str, list[Measurement]] = {"direct": [], "pgbouncer": []}
    cpus: dict[str, list[Cpu]] = {"direct": [], "pgbouncer": []}
    for rep in range(args.reps):
        for route, url in (("direct", direct), ("pgbouncer", pooled)):
            row, cpu = measured(url, setting, args, postmaster, bouncer, direct)
            rows[route].append(row)
            cpus[route].append(cpu)
            rate = f"{row.jobs_per_s:,.0f} jobs/s" if row.jobs_per_s else "-"
            status = "verified" if row.verified else f"NOT verified: {row.error}"
            server = f"{cpu.server:.1f}" if cpu.server is not None else "?"
            print(
                f"rep {rep + 1} {route:<9} {setting}: {rate} ({status}); CPU s: workers "
                f"{cpu.client:.1f}, server {server}, pgbouncer {cpu.pgbouncer or 0:.1f}; "
                f"WAL {cpu.wal_bytes / int(args.jobs):,.0f} bytes/job",
                flush=True,
            )

    def per_cpu_second(route: str, part: str) -> float | None:
        spent = [getattr(c, part) for c in cpus[route]]
        if any(s is None or s <= 0 for s in spent):
            return None
        return float(round(int(args.jobs) * len(spent) / sum(spent)))

    summary = {
        "jobs": args.jobs,
        "setting": str(setting),
        "pool_size": args.pool_size,
        "median_jobs_per_s": {route: median_rate(found) for route, found in rows.items()},
        "jobs_per_worker_cpu_second": {r: per_cpu_second(r, "client") for r in rows},
        "jobs_per_server_cpu_second": {r: per_cpu_second(r, "server") for r in rows},
        "wal_bytes_per_job": round(
            statistics.median(c.wal_bytes for found in cpus.values() for c in found) / args.jobs
        ),
        "all_verified": all(r.verified for found in rows.values() for r in found),
    }
    print(json.dumps(summary))
    return 0 if summary["all_verified"] else 2


if __name__ == "__main__":
    sys.exit(main())
