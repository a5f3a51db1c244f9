#!/usr/bin/env python3
"""A soak run: steady churn through real worker processes on a private embedded PostgreSQL with
production defaults (autovacuum on), a random worker SIGKILLed every few minutes, a transaction
that pins the xmin horizon for five minutes a third of the way in, and one immediate-mode
(crash) restart of the database two thirds of the way in.

Reports jobs processed, lost (must be 0), duplicated (must be 0: completion is transactional),
stuck (unfinished after the drain: must be 0), throughput before, during and after the pin
(must recover within minutes of the release), table and index sizes over time (must plateau:
retention prunes, vacuum reclaims), and enqueue→claim latency per window. Not part of the test
suite.

    .venv/bin/python bench/soak/run.py --minutes 30 --rate 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conveyor.embedded import EmbeddedServer
from conveyor.phases import runner

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for number in (0, 1, 2, 3):
            runner.ratify(conn, number, "soak")
            runner.apply(conn, number, "soak")
        for key, value in (
            ("queue.job_substrate.enabled", "true"),
            ("queue.lease_reaper.enabled", "true"),
            ("queue.retention.succeeded_seconds", "60"),
            ("queue.notify.bridge_enabled", "true"),
        ):
            conn.execute("SELECT conveyor.fn_config_set(%s, %s::jsonb, 'soak')", (key, value))
        conn.execute(
            "CREATE TABLE public.soak_effect (id bigserial PRIMARY KEY, job_id bigint NOT NULL,"
            " seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )


class Producer(threading.Thread):
    """Enqueues *rate* jobs/s in batches of rate/10 every 100 ms, retrying through outages."""

    def __init__(self, url: str, rate: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.next_seq = 0
        self.stop = threading.Event()
        self.failures = 0

    def run(self) -> None:
        per_tick = max(1, self.rate // 10)
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            batch = [
                {"kind": "soak.effect", "queue": "soak", "payload": {"seq": self.next_seq + i}}
                for i in range(per_tick)
            ]
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.url, autocommit=True)
                answer = conn.execute(
                    "SELECT conveyor.fn_job_enqueue_many(jobs => %s)", (Jsonb(batch),)
                ).fetchone()
                assert answer is not None and answer[0].get("ok"), answer
                self.next_seq += per_tick  # only after the commit acknowledged the batch
            except psycopg.OperationalError:
                self.failures += 1
                conn = None
                time.sleep(0.5)
                continue
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


def start_worker(url: str, index: int, logs: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(HERE)}
    with (logs / f"worker{index}.log").open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "-v",
                "worker",
                "--app",
                "soakapp:registry",
                "--queue",
                "soak",
                "--concurrency",
                "8",
                "--lease-seconds",
                "10",
                "--poll-interval",
                "0.2",
                "--summary-every",
                "60",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Pin(threading.Thread):
    """Holds one transaction with an xid (so an xmin) open for *seconds*: a forgotten session."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.started = self.released = 0.0

    def run(self) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            conn.execute("SELECT txid_current()")
            self.started = time.monotonic()
            log(f"pinning the xmin horizon for {self.seconds:.0f} s")
            time.sleep(self.seconds)
            conn.rollback()
        self.released = time.monotonic()
        log("released the pin")


SAMPLE_SQL = """
SELECT pg_total_relation_size('conveyor.job_queue'), pg_indexes_size('conveyor.job_queue'),
       (SELECT s.job_queue_dead_tuples FROM conveyor.fn_queue_health__db_signals() AS s),
       (SELECT count(*) FROM conveyor.job_queue WHERE status IN ('queued', 'in_progress')),
       (SELECT count(*) FROM public.soak_effect),
       (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
                   ORDER BY extract(epoch FROM jq.started_at - jq.run_at) * 1000)
          FROM conveyor.job_queue AS jq
         WHERE jq.started_at > now() - make_interval(secs => %s)),
       (SELECT s.oldest_xmin_age_seconds FROM conveyor.fn_queue_health__db_signals() AS s),
       (SELECT s.database_hint FROM conveyor.fn_queue_health__db_signals() AS s)
"""


def sample(url: str, window: float) -> dict[str, Any] | None:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(SAMPLE_SQL, (window,)).fetchone()
    except psycopg.OperationalError:
        return None
    assert row is not None
    p50, p99 = row[5] or [None, None]
    return {
        "t": round(time.monotonic(), 1),
        "table_bytes": row[0],
        "index_bytes": row[1],
        "dead_tuples": row[2],
        "unfinished": row[3],
        "effects": row[4],
        "claim_latency_p50_ms": p50,
        "claim_latency_p99_ms": p99,
        "xmin_age_s": None if row[6] is None else round(row[6]),
        "database_hint": row[7],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=200, help="jobs enqueued per second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--pin-minutes", type=float, default=5.0, help="xmin pin length")
    parser.add_argument("--restart-mode", default="immediate", choices=("fast", "immediate"))
    args = parser.parse_args()
    load_before = os.getloadavg()

    base = Path(tempfile.mkdtemp(prefix="conveyor-soak-", dir="/tmp"))
    base.chmod(0o755)
    logs = base / "logs"
    logs.mkdir()
    server = EmbeddedServer(base / "pgdata")
    url = server.start()
    log(f"embedded server on {base}")
    setup(url)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'server_version',"
            " 'autovacuum_naptime', 'shared_buffers', 'max_connections')"
        ).fetchall()
        settings: dict[str, str] = {str(name): str(value) for name, value in rows}
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    with (logs / "orchestrator.log").open("ab") as out:
        orchestrator = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "-v", "orchestrator", "--interval", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers = [start_worker(url, i, logs) for i in range(args.workers)]
    producer = Producer(url, args.rate)
    producer.start()

    t0 = time.monotonic()
    duration = args.minutes * 60
    samples: list[dict[str, Any]] = []
    kills = restarts = 0
    next_kill, next_sample, restarted = t0 + args.kill_every, t0 + args.sample_every, False
    pin = Pin(url, args.pin_minutes * 60)
    try:
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            if now >= next_kill:
                victim = random.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = start_worker(url, victim, logs)
                kills += 1
                log(f"SIGKILLed worker {victim} and started a new one ({kills} kills)")
                next_kill = now + args.kill_every
            if not pin.is_alive() and not pin.started and now - t0 >= duration / 3:
                pin.start()
            if not restarted and now - t0 >= duration * 2 / 3:
                log(f"restarting the database server (-m {args.restart_mode})")
                server.restart(args.restart_mode)
                restarts += 1
                restarted = True
            if now >= next_sample:
                point = sample(url, args.sample_every)
                if point is not None:
                    point["elapsed_s"] = round(now - t0)
                    point["pinned"] = bool(pin.started) and not pin.released
                    samples.append(point)
                    log(json.dumps(point))
                next_sample = now + args.sample_every
            time.sleep(0.5)
    finally:
        producer.stop.set()
        producer.join()
    log(f"producer stopped at {producer.next_seq} jobs; draining")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        point = sample(url, 10)
        if point is not None and point["unfinished"] == 0:
            break
        time.sleep(1)
    with psycopg.connect(url, autocommit=True) as conn:
        counts = conn.execute(
            "SELECT count(DISTINCT s.seq), count(*) - count(DISTINCT s.seq),"
            "       (SELECT count(*) FROM (SELECT seq FROM public.soak_effect GROUP BY seq"
            "                               HAVING count(*) > 1) AS d)"
            "  FROM public.soak_effect AS s"
        ).fetchone()
        dead_letters = conn.execute("SELECT count(*) FROM conveyor.job_dead_letter").fetchone()
        missing = conn.execute(
            "SELECT count(*) FROM generate_series(0, %s - 1) AS g(seq)"
            " WHERE NOT EXISTS (SELECT 1 FROM public.soak_effect AS s WHERE s.seq = g.seq)",
            (producer.next_seq,),
        ).fetchone()
        stuck = conn.execute(
            "SELECT count(*) FROM conveyor.job_queue WHERE status IN ('queued', 'in_progress')"
        ).fetchone()
    pin.join(timeout=60)
    for process in [*workers, orchestrator]:
        process.send_signal(signal.SIGTERM)
    for process in [*workers, orchestrator]:
        process.wait(timeout=60)
    server.stop()
    assert counts is not None and dead_letters is not None and missing is not None
    assert stuck is not None
    report = {
        "minutes": args.minutes,
        "rate": args.rate,
        "workers": args.workers,
        "enqueued": producer.next_seq,
        "processed": counts[0],
        "extra_effect_rows": counts[1],
        "duplicated_jobs": counts[2],
        "lost": missing[0],
        "stuck": stuck[0],
        "dead_letters": dead_letters[0],
        "worker_kills": kills,
        "database_restarts": restarts,
        "producer_retries": producer.failures,
        "restart_mode": args.restart_mode,
        "pin": {
            "minutes": args.pin_minutes,
            "from_s": round(pin.started - t0) if pin.started else None,
            "to_s": round(pin.released - t0) if pin.released else None,
        },
        "throughput": throughput(samples, pin.started - t0, pin.released - t0),
        "settings": settings,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"soak-{stamp}.json").write_text(json.dumps(report, indent=1))
    write_markdown(RESULTS / f"soak-{stamp}.md", report)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))
    ok = report["lost"] == 0 and report["duplicated_jobs"] == 0 and report["stuck"] == 0
    return 0 if ok else 1


def throughput(samples: list[dict[str, Any]], pin_from: float, pin_to: float) -> dict[str, Any]:
    """Jobs processed per second before, during and after the pin, and when it recovered."""
    rates: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    recovered_after_s = None
    for previous, point in itertools.pairwise(samples):
        seconds = point["t"] - previous["t"]
        if seconds <= 0:
            continue
        rate = (point["effects"] - previous["effects"]) / seconds
        at = point["elapsed_s"]
        window = "before" if at <= pin_from else "during" if at <= pin_to else "after"
        rates[window].append(rate)
        if window == "after" and recovered_after_s is None and rates["before"]:
            typical = sorted(rates["before"])[len(rates["before"]) // 2]
            backlog = sorted(s["unfinished"] for s in samples if s["elapsed_s"] <= pin_from)
            if rate >= 0.9 * typical and point["unfinished"] <= 2 * backlog[-1] + 50:
                recovered_after_s = round(at - pin_to)
    mean = {k: round(sum(v) / len(v), 1) if v else None for k, v in rates.items()}
    return {"jobs_per_s": mean, "recovered_after_s": recovered_after_s}


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    pin, speed, settings = report["pin"], report["throughput"], report["settings"]
    before, after = report["load_average"]["before"], report["load_average"]["after"]
    lines = [
        f"# Soak run: {report['minutes']:g} min at {report['rate']} jobs/s, "
        f"{report['workers']} worker processes",
        "",
        f"Private embedded PostgreSQL {settings.get('server_version')} with production defaults "
        f"(autovacuum {settings.get('autovacuum')}, naptime {settings.get('autovacuum_naptime')} "
        f"s) on the same 2-core machine, shared with other work: load average "
        f"{before[0]:.1f} / {before[1]:.1f} / {before[2]:.1f} at the start, "
        f"{after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f} at the end. A random worker "
        f"SIGKILLed {report['worker_kills']} times; one transaction holding an xid (so the xmin "
        f"horizon) from {pin['from_s']} s to {pin['to_s']} s; {report['database_restarts']} "
        f"database restart(s) (-m {report['restart_mode']}) two thirds of the way in; "
        "transactional completion (an effect row per job in the same transaction as "
        "fn_job_complete); retention of succeeded jobs 60 s; NOTIFY bridge on.",
        "",
        "| enqueued | processed | lost | duplicated | stuck | dead letters | producer retries |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {report['enqueued']:,} | {report['processed']:,} | {report['lost']} | "
        f"{report['duplicated_jobs']} | {report['stuck']} | {report['dead_letters']} | "
        f"{report['producer_retries']} |",
        "",
        "| jobs/s before the pin | during | after | recovered (s after release) |",
        "|---:|---:|---:|---:|",
        f"| {speed['jobs_per_s']['before']} | {speed['jobs_per_s']['during']} | "
        f"{speed['jobs_per_s']['after']} | {speed['recovered_after_s']} |",
        "",
        "| elapsed s | pinned | job_queue total kB | indexes kB | dead tuples | xmin age s "
        "| database_hint | unfinished | enqueue→claim p50 ms | p99 ms |",
        "|---:|:-:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for s in report["samples"]:
        p50 = "" if s["claim_latency_p50_ms"] is None else f"{s['claim_latency_p50_ms']:.1f}"
        p99 = "" if s["claim_latency_p99_ms"] is None else f"{s['claim_latency_p99_ms']:.1f}"
        lines.append(
            f"| {s['elapsed_s']} | {'yes' if s['pinned'] else ''} "
            f"| {s['table_bytes'] // 1024:,} | {s['index_bytes'] // 1024:,} "
            f"| {s['dead_tuples']} | {'' if s['xmin_age_s'] is None else s['xmin_age_s']} "
            f"| {s['database_hint']} | {s['unfinished']} | {p50} | {p99} |"
        )
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
