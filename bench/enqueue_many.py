#!/usr/bin/env python3
"""enqueue_many throughput: this checkout against an older function version, and raw COPY.

    git show 34a5275:src/conveyor/sql/functions/fn_job_enqueue_many.1.sql > /tmp/base_many.sql
    .venv/bin/python bench/enqueue_many.py --dsn postgresql://USER@HOST:PORT/postgres \
        --base /tmp/base_many.sql [--keys] [--phase8] [--profile]

Two scratch databases (phases 0–1, or 0–4 and 8 with --phase8; substrate on; dropped at the
end): `this` as this checkout installs it, `base` the same with the --base file run on top (any
conveyor function file, e.g. an older fn_job_enqueue_many or fn_job__enqueue_problem). After a
warm-up, --calls rounds each time one call of every method, interleaved call by call in a
rotating order (so load drift hits all four alike), autocommit, --batch jobs per call:

- `this` / `base`: `jobs.enqueue_many` (client JSON encoding included);
- `copy_queue`: COPY of the same rows into conveyor.job_queue (its indexes, phase triggers);
- `copy_raw`: COPY into the bench harness's bare table (raw_jobs of /work/shared/bench raw.py:
  bigserial key, payload, status, one partial index, a statement NOTIFY trigger).

--keys gives every job a unique idempotency key (COPY into job_queue carries it too). Tables
are truncated every 10 rounds, untimed. Prints a summary: median and best µs per job, and as
rates (higher = faster; the median of the per-round ratios) this ÷ base, this ÷ copy_raw and
copy_queue ÷ copy_raw. --profile then times the statements inside calls of `this` with
auto_explain (per-statement µs per job, median of 5 calls).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor import db, jobs
from conveyor.phases import runner

HERE = Path(__file__).resolve().parent.parent
FUNCTIONS = HERE / "src/conveyor/sql/functions"
OWNER = HERE / "src/conveyor/sql/owner.sql"
RAW_DDL = """
CREATE TABLE public.raw_jobs (
    id      bigserial PRIMARY KEY,
    payload jsonb     NOT NULL,
    status  smallint  NOT NULL DEFAULT 0
);
CREATE INDEX raw_jobs_queued ON public.raw_jobs (id) WHERE status = 0;
CREATE FUNCTION public.raw_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('raw_jobs', '');
    RETURN NULL;
END $$;
CREATE TRIGGER raw_jobs_notify AFTER INSERT ON public.raw_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION public.raw_jobs_notify();
"""
AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_timing = off",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_level = notice",
)

Conn = psycopg.Connection[Any]


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def install(url: str, path: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(path.read_text())
        conn.execute(OWNER.read_text())  # a function the file created belongs to conveyor_admin


def prepare(url: str, phases: tuple[int, ...]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for number in phases:
            runner.ratify(conn, number, "bench")
            runner.apply(conn, number, "bench")
        conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
        conn.execute(RAW_DDL)


class Batches:
    """The rows of call n: unique payload seqs and (with keys) unique idempotency keys."""

    def __init__(self, size: int, keys: bool) -> None:
        self.size, self.keys, self.calls = size, keys, 0
        self.tag = uuid.uuid4().hex[:8]

    def next(self) -> list[dict[str, Any]]:
        first, self.calls = self.calls * self.size, self.calls + 1
        items: list[dict[str, Any]] = []
        for seq in range(first, first + self.size):
            item: dict[str, Any] = {"kind": "bench.noop", "queue": "bench", "payload": {"seq": seq}}
            if self.keys:
                item["idempotency_key"] = f"{self.tag}-{seq}"
            items.append(item)
        return items


def enqueue_many(conn: Conn, items: list[dict[str, Any]]) -> None:
    jobs.enqueue_many(conn, items)


def copy_queue(conn: Conn, items: list[dict[str, Any]]) -> None:
    with conn.cursor().copy(
        "COPY conveyor.job_queue (queue, kind, payload, status, idempotency_key) FROM STDIN"
    ) as copy:
        for item in items:
            copy.write_row(
                (item["queue"], item["kind"], json.dumps(item["payload"]), "queued",
                 item.get("idempotency_key"))
            )  # fmt: skip


def copy_raw(conn: Conn, items: list[dict[str, Any]]) -> None:
    with conn.cursor().copy("COPY public.raw_jobs (payload) FROM STDIN") as copy:
        for item in items:
            copy.write_row((json.dumps(item["payload"]),))


Send = Callable[[Conn, list[dict[str, Any]]], None]


def measure(this_url: str, base_url: str, args: argparse.Namespace) -> list[dict[str, float]]:
    """Milliseconds of every method's call per round, the four interleaved call by call."""
    with (
        psycopg.connect(this_url, autocommit=True) as this,
        psycopg.connect(base_url, autocommit=True) as base,
    ):
        methods: dict[str, tuple[Conn, Send]] = {
            "this": (this, enqueue_many), "base": (base, enqueue_many),
            "copy_queue": (this, copy_queue), "copy_raw": (this, copy_raw),
        }  # fmt: skip
        batches = {label: Batches(args.batch, args.keys) for label in methods}
        for label, (conn, send) in methods.items():
            for _ in range(8):  # warm-up past plpgsql's first plans
                send(conn, batches[label].next())
        calls: list[dict[str, float]] = []
        order = list(methods)
        for number in range(args.calls):
            if number % 10 == 0:  # keep the tables small and alike (not timed)
                for conn in (this, base):
                    conn.execute("TRUNCATE conveyor.job_queue, public.raw_jobs")
            row: dict[str, float] = {}
            for label in order[number % 4 :] + order[: number % 4]:
                conn, send = methods[label]
                items = batches[label].next()
                start = time.perf_counter()
                send(conn, items)
                row[label] = (time.perf_counter() - start) * 1e3
            calls.append(row)
        for conn in (this, base):
            conn.execute("TRUNCATE conveyor.job_queue, public.raw_jobs")
    return calls


def profile(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """µs per job of one call's parts (median of 7 calls): the client's encoding, each statement
    auto_explain logs inside the call (the last line is the whole call's server time), and the
    rest of the wall time (the wire, jsonb input of the argument, the protocol)."""
    batches = Batches(args.batch, args.keys)
    spans: dict[str, list[float]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(8):
            jobs.enqueue_many(conn, batches.next())
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        for statement in AUTO_EXPLAIN:
            conn.execute(statement)
        for _ in range(7):
            items = batches.next()
            start = time.perf_counter()
            built = jobs.enqueue_many_statement(items)
            json.dumps([dict(item) for item in items])  # what Jsonb does when psycopg sends it
            client = time.perf_counter() - start
            notices.clear()
            start = time.perf_counter()
            jobs.enqueue_many(conn, items)
            wall = time.perf_counter() - start
            assert built is not None
            server = 0.0
            for order, notice in enumerate(notices):
                duration = re.search(r"duration: ([\d.]+) ms", notice)
                query = re.search(r"Query Text: (.*?)(?:\n\s*\n|\n\S|$)", notice, re.S)
                text = " ".join((query.group(1) if query else "?").split())[:90]
                if duration:
                    spans.setdefault(f"{order + 1:02d} {text}", []).append(float(duration.group(1)))
                    server = float(duration.group(1))  # the top-level call is logged last
            spans.setdefault("00 client: items → statement, JSON text", []).append(client * 1e3)
            spans.setdefault("99 rest of the wall time (wire, jsonb input, protocol)", []).append(
                (wall - client) * 1e3 - server
            )
        conn.execute("TRUNCATE conveyor.job_queue")
    return [
        {"part": label[3:], "us_per_job": round(statistics.median(ms) * 1e3 / args.batch, 2)}
        for label, ms in sorted(spans.items())
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a role that may create databases")
    parser.add_argument("--base", type=Path, required=True, help="an older function file")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=120, help="calls of each method")
    parser.add_argument("--keys", action="store_true", help="a unique idempotency key per job")
    parser.add_argument("--phase8", action="store_true", help="phases 0–4 and 8 (limits)")
    parser.add_argument("--profile", action="store_true", help="auto_explain this version")
    args = parser.parse_args()
    if not args.base.is_file():
        raise SystemExit(f"--base {args.base}: no such file")
    phases = (0, 1, 2, 3, 4, 8) if args.phase8 else (0, 1)
    admin_dsn = args.dsn or db.resolve_url()
    names = [f"conveyor_em_bench_{uuid.uuid4().hex[:8]}" for _ in ("this", "base")]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    this_url, base_url = (scratch(admin_dsn, name) for name in names)
    steps: list[dict[str, Any]] = []
    try:
        for url in (this_url, base_url):
            prepare(url, phases)
        install(base_url, args.base)
        calls = measure(this_url, base_url, args)
        if args.profile:
            steps = profile(this_url, args)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.stop_embedded()

    def ratio(top: str, bottom: str) -> float:  # rate of top ÷ rate of bottom, call by call
        return round(statistics.median(c[bottom] / c[top] for c in calls), 3)

    def per_job(label: str, pick: Callable[[list[float]], float]) -> float:
        return round(pick([c[label] for c in calls]) * 1e3 / int(args.batch), 2)

    labels = ("this", "base", "copy_queue", "copy_raw")
    summary = {
        "scenario": "enqueue_many",
        "base": str(args.base),
        "batch": args.batch,
        "calls": args.calls,
        "keys": args.keys,
        "phases": list(phases),
        **{f"{label}_us_per_job": per_job(label, statistics.median) for label in labels},
        **{f"{label}_us_per_job_min": per_job(label, min) for label in labels},
        "this_over_base": ratio("this", "base"),
        "this_over_copy_raw": ratio("this", "copy_raw"),
        "copy_queue_over_copy_raw": ratio("copy_queue", "copy_raw"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary))
    for step in steps:
        print(json.dumps(step))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
