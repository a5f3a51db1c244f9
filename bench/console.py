#!/usr/bin/env python3
"""Console page timings on a big table: 1,000,000 jobs, 100,000 dead letters, 2,000 workflows.

Builds the data with set-based SQL (straight INSERT … SELECT generate_series into the tables: a
fixture, not the API), starts a real `conveyor web` process, logs in and reads every page
--rounds times, taking the server's own time from its `Server-Timing` header. With
--screenshots DIR it then photographs each page in Chromium (Playwright). Usage:

    .venv/bin/python bench/console.py                      # embedded PostgreSQL under /tmp
    .venv/bin/python bench/console.py --dsn postgresql://…/postgres --screenshots docs/console
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.phases import runner
from conveyor.web import users

HERE = Path(__file__).resolve().parent
DATABASE = "conveyor_console_bench"
PASSWORD = "bench-password"
QUEUES = 20
KINDS = 30

BUILD_SQL = [
    # 1,000,000 jobs over 20 queues and 30 kinds, one every 0.6 s over the last 7 days: 880k
    # succeeded, 20k cancelled, 97k queued (a tenth scheduled for later), 3k running.
    """
    INSERT INTO conveyor.job_queue
           (queue, kind, payload, priority, status, run_at, attempts, max_attempts, lease_token,
            leased_by, lease_expires_at, created_at, started_at, finished_at)
    SELECT 'q' || lpad((g % 20)::text, 2, '0'),
           'kind.' || lpad((g % 30)::text, 2, '0'),
           jsonb_build_object('order', g, 'email', 'customer' || g || '@example.com'),
           (g % 3)::smallint,
           s.status,
           CASE WHEN s.status = 'queued' AND g % 10 = 0 THEN now() + interval '1 hour'
                ELSE s.created END,
           CASE WHEN s.status IN ('succeeded', 'in_progress') THEN 1 ELSE 0 END,
           NULL,
           CASE WHEN s.status = 'in_progress' THEN gen_random_uuid() END,
           CASE WHEN s.status = 'in_progress' THEN 'bench-worker-' || (g % 4) END,
           CASE WHEN s.status = 'in_progress' THEN now() + interval '30 seconds' END,
           s.created,
           CASE WHEN s.status IN ('succeeded', 'in_progress') THEN s.created END,
           CASE WHEN s.status IN ('succeeded', 'cancelled')
                THEN s.created + interval '2 seconds' END
      FROM generate_series(1, 1000000) AS g
     CROSS JOIN LATERAL (
           SELECT CASE WHEN g % 1000 < 97 THEN 'queued'
                       WHEN g % 1000 < 100 THEN 'in_progress'
                       WHEN g % 1000 < 120 THEN 'cancelled'
                       ELSE 'succeeded' END AS status,
                  now() - (1000001 - g) * interval '600 milliseconds' AS created
           ) AS s
    """,
    # 100,000 dead letters: 90k open, 10k replayed.
    """
    INSERT INTO conveyor.job_dead_letter
           (job_id, queue, kind, payload, job, reason, error, attempts, failed_at, resolved_at,
            resolved_by)
    SELECT 2000000 + g,
           'q' || lpad((g % 20)::text, 2, '0'),
           'kind.' || lpad((g % 30)::text, 2, '0'),
           jsonb_build_object('order', g),
           jsonb_build_object('priority', 0, 'max_attempts', 5),
           (ARRAY['permanent_failure', 'max_attempts_exhausted', 'lease_expired'])[1 + g % 3],
           'ValueError: order ' || g || ' has no address',
           5,
           now() - (100001 - g) * interval '5 seconds',
           CASE WHEN g % 10 = 0 THEN now() END,
           CASE WHEN g % 10 = 0 THEN 'bench' END
      FROM generate_series(1, 100000) AS g
    """,
]


# A five-step template with an operator step, one queue per step so a claim takes the oldest
# workflow's step; 2,000 workflows through fn_mot_graph_emit (a tenth cancelled), and the oldest
# moved on by hand (validate and charge done, reserve running) for the detail page.
WORKFLOW_STEPS = [
    {"key": "validate", "kind": "order.validate", "executor": "dot", "queue": "wf.validate"},
    {"key": "charge", "kind": "order.charge", "executor": "dot", "queue": "wf.charge",
     "parents": ["validate"]},
    {"key": "reserve", "kind": "order.reserve", "executor": "dot", "queue": "wf.reserve",
     "parents": ["validate"]},
    {"key": "approve", "kind": "order.approve", "executor": "operator", "queue": "wf.approve",
     "parents": ["charge", "reserve"]},
    {"key": "ship", "kind": "order.ship", "executor": "dot", "queue": "wf.ship",
     "parents": ["approve"]},
]  # fmt: skip
WORKFLOWS = 2000
EMIT_SQL = """
    SELECT conveyor.fn_mot_graph_emit(template => 'order.fulfil',
                                      params => jsonb_build_object('order', g))
      FROM generate_series(1, %s) AS g
"""
CANCEL_SOME_SQL = """
    SELECT conveyor.fn_job_workflow_cancel(workflow_id => jw.id, reason => 'customer withdrew',
                                           cancelled_by => 'bench')
      FROM conveyor.job_workflow AS jw
     WHERE jw.id % 10 = 0
"""


def _claim_and_maybe_complete(conn: psycopg.Connection[Any], queue: str, complete: bool) -> None:
    row = conn.execute(
        "SELECT conveyor.fn_job_claim(worker => 'bench-worker-0', queues => ARRAY[%s])", (queue,)
    ).fetchone()
    assert row is not None
    (job,) = row[0]["jobs"]
    if complete:
        conn.execute(
            "SELECT conveyor.fn_job_complete(job_id => %s, lease_token => %s)",
            (job["job_id"], job["lease_token"]),
        )


def build_workflows(conn: psycopg.Connection[Any]) -> None:
    """The workflows of the bench, emitted and cancelled through the SQL functions."""
    from psycopg.types.json import Jsonb

    conn.execute("UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'workflow.mot.enabled'")
    conn.execute(
        "SELECT conveyor.fn_mot_template_register(name => 'order.fulfil', steps => %s)",
        (Jsonb(WORKFLOW_STEPS),),
    )
    conn.execute(EMIT_SQL, (WORKFLOWS,))
    conn.execute(CANCEL_SOME_SQL)
    _claim_and_maybe_complete(conn, "wf.validate", complete=True)
    _claim_and_maybe_complete(conn, "wf.charge", complete=True)
    _claim_and_maybe_complete(conn, "wf.reserve", complete=False)


MESSAGES = 300  # customer messages (phase 7), a fifth of them past approval


def build_messages(conn: psycopg.Connection[Any]) -> None:
    """Customer messages ingested, classified and drafted through the SQL functions."""
    conn.execute(
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'customer.channel.enabled'"
    )
    for n in range(1, MESSAGES + 1):
        row = conn.execute(
            "SELECT conveyor.fn_customer_message_ingest('support', 'INBOX', 1, %s, NULL, now(),"
            " %s, %s, ARRAY['support@example.invalid'], '{}', NULL, NULL, NULL, %s, NULL, 60)",
            (n, f"Order {1000 + n} is late", f"customer{n}@example.invalid", _MAIL),
        ).fetchone()
        assert row is not None
        message_id = int(row[0]["id"])
        kind = ("support", "billing", "complaint")[n % 3]
        conn.execute(
            "SELECT conveyor.fn_customer_message_classify(%s, %s, 'bench')", (message_id, kind)
        )
        conn.execute(
            "SELECT conveyor.fn_customer_message_draft(%s, %s, %s, 'bench')",
            (message_id, f"Re: Order {1000 + n} is late", _DRAFT),
        )
        if n % 5 == 0:
            conn.execute(
                "SELECT conveyor.fn_customer_message_approve(%s, NULL, 'alice')", (message_id,)
            )


_MAIL = "Hello,\n\nmy order has not arrived yet. Can you tell me where it is?\n\nThanks"
_DRAFT = (
    "Hello,\n\nsorry for the wait: your order left our warehouse this morning and should"
    " reach you within two days.\n\nBest regards,\nSupport"
)


def with_database(dsn: str, name: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


def build(admin_dsn: str) -> str:
    """A fresh database with phases 0–4, 6 and 7 and the big tables; its URL."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    dsn = with_database(admin_dsn, DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (0, 1, 2, 3, 4, 6, 7):
            runner.ratify(conn, number, "bench")
            runner.apply(conn, number, "bench")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true'"
            " WHERE key = 'queue.job_substrate.enabled'"
        )
        started = time.perf_counter()
        for statement in BUILD_SQL:
            conn.execute(statement.encode())
        for n in range(6):
            conn.execute(
                "SELECT conveyor.fn_heartbeat_register(component => %s, component_kind => 'worker',"
                " cadence_seconds => 5, metadata => jsonb_build_object('queues', %s::jsonb))",
                (f"bench-worker-{n}", f'["q{n:02d}", "q{n + 6:02d}"]'),
            )
            if n < 5:  # one never beats: the overview explains why it is not fresh
                conn.execute(
                    "SELECT conveyor.fn_heartbeat_beat(component => %s)", (f"bench-worker-{n}",)
                )
        conn.execute("SELECT conveyor.fn_job_queue_pause(queue => 'q19', paused_by => 'bench')")
        build_workflows(conn)
        build_messages(conn)
        conn.execute("VACUUM ANALYZE conveyor.job_queue")
        conn.execute("VACUUM ANALYZE conveyor.job_dead_letter")
        print(
            f"built 1,000,000 jobs + 100,000 dead letters + {WORKFLOWS:,} workflows in"
            f" {time.perf_counter() - started:.1f} s"
        )
    return dsn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def console(dsn: str, workdir: Path) -> Iterator[str]:
    """A `conveyor web` process on the bench database; its base URL."""
    users_file = workdir / "users"
    users.add(users_file, "alice", "operator", PASSWORD)
    users.add(users_file, "rita", "reader", PASSWORD)
    port = free_port()
    log = (workdir / "console.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "web", "--port", str(port), "--users", str(users_file)],
        env={**os.environ, "CONVEYOR_DATABASE_URL": dsn},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"conveyor web did not start: {(workdir / 'console.log').read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def logged_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token
    client.post("/login", data={"csrf": token.group(1), "username": name, "password": PASSWORD})
    return client


def pages(dsn: str) -> list[tuple[str, str]]:
    """(label, path) of every page to time, ids picked from the data."""
    with psycopg.connect(dsn) as conn:
        mid = conn.execute("SELECT max(id) - 400000 FROM conveyor.job_queue").fetchone()
        dead = conn.execute(
            "SELECT min(id) + 50000 FROM conveyor.job_dead_letter WHERE resolved_at IS NULL"
        ).fetchone()
        oldest = conn.execute("SELECT min(id) FROM conveyor.job_workflow").fetchone()
        middle = conn.execute("SELECT min(id) + 1000 FROM conveyor.job_workflow").fetchone()
        waiting = conn.execute(
            "SELECT max(id) FROM conveyor.customer_message WHERE state = 'awaiting_approval'"
        ).fetchone()
        assert mid and dead and oldest and middle and waiting
    job_id, dead_id = int(mid[0]), int(dead[0])
    return [
        ("overview", "/"),
        ("queues", "/queues"),
        ("jobs", "/jobs"),
        ("jobs, page 2000 back (keyset)", f"/jobs?before={job_id}"),
        ("jobs state=queued", "/jobs?state=queued"),
        ("jobs state=succeeded", "/jobs?state=succeeded"),
        ("jobs queue=q07", "/jobs?queue=q07"),
        ("jobs kind=kind.03 state=queued", "/jobs?kind=kind.03&state=queued"),
        ("jobs created in an hour, a day ago", _day_ago()),
        ("jobs kind=nothing.matches (worst case: reads every row)", "/jobs?kind=nothing.matches"),
        ("job detail", f"/jobs/{job_id}"),
        ("dead letters", "/dead-letters"),
        ("dead letters queue=q03", "/dead-letters?queue=q03"),
        ("dead letter detail", f"/dead-letters/{dead_id}"),
        ("replay confirmation queue=q03", "/dead-letters/replay-set?queue=q03"),
        ("components", "/components"),
        ("phases", "/phases"),
        ("workflows", "/workflows"),
        ("workflows, a page back (keyset)", f"/workflows?before={int(middle[0])}"),
        ("workflows status=cancelled", "/workflows?status=cancelled"),
        ("workflow detail (graph)", f"/workflows/{int(oldest[0])}"),
        ("approvals", "/approvals"),
        ("approvals, any state", "/approvals?state="),
        ("approval detail (draft)", f"/approvals/{int(waiting[0])}"),
        ("/metrics", "/metrics"),
    ]


def _day_ago() -> str:
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    since = now.timestamp() - 86400
    start = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
    end = datetime.fromtimestamp(since + 3600, UTC).replace(tzinfo=None)
    return f"/jobs?since={start.isoformat()}%2B00:00&until={end.isoformat()}%2B00:00"


def measure(client: httpx.Client, path: str, rounds: int) -> tuple[list[float], list[float]]:
    """Server times (Server-Timing) and client round trips of *rounds* reads, in ms."""
    client.get(path)  # warm: first use of a pooled connection, template compilation
    server, wall = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        wall.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        match = re.search(r"dur=([0-9.]+)", answer.headers.get("server-timing", ""))
        assert match, path
        server.append(float(match.group(1)))
    return server, wall


def screenshots(url: str, paths: list[tuple[str, str]], target: Path) -> None:
    """One PNG per page, as the operator (and the job detail as a reader) sees it."""
    from playwright.sync_api import sync_playwright

    target.mkdir(parents=True, exist_ok=True)
    shots = {
        "overview": "/",
        "queues": "/queues",
        "jobs": "/jobs?queue=q07",
        "job": dict(paths)["job detail"],
        "dead-letters": "/dead-letters",
        "replay-confirm": "/dead-letters/replay-set?queue=q03",
        "components": "/components",
        "phases": "/phases",
        "workflows": "/workflows",
        "workflow": dict(paths)["workflow detail (graph)"],
        "approvals": "/approvals",
        "approval": dict(paths)["approval detail (draft)"],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        for who in ("alice", "rita"):
            page = browser.new_page(viewport={"width": 1360, "height": 900}, base_url=url)
            page.goto("/login")
            page.fill('input[name="username"]', who)
            page.fill('input[name="password"]', PASSWORD)
            page.click('button[type="submit"]')
            page.wait_for_selector("[data-testid=viewer]")
            for name, path in shots.items():
                if who == "rita" and name not in ("job", "dead-letters", "approval"):
                    continue
                page.goto(path)
                suffix = "-reader" if who == "rita" else ""
                full = name == "overview"  # the chart and the lag tables are below the fold
                page.screenshot(path=str(target / f"{name}{suffix}.png"), full_page=full)
            page.goto("/login")
            page.close()
        page = browser.new_page(viewport={"width": 1360, "height": 900}, base_url=url)
        page.goto("/login")
        page.screenshot(path=str(target / "login.png"))
        browser.close()
    print(f"screenshots in {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a role that may create databases (default: embedded)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--screenshots", type=Path, help="write page screenshots here")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="console-bench-", dir="/tmp"))
    workdir.chmod(0o755)  # the embedded server may run as another user (conveyor-pg)
    server: Any = None
    try:
        admin = args.dsn
        if admin is None:
            from conveyor.embedded import EmbeddedServer

            server = EmbeddedServer(workdir / "pgdata")
            server.start()
            admin = server.dsn
        dsn = build(admin)
        paths = pages(dsn)
        with console(dsn, workdir) as url:
            client = logged_in(url, "alice")
            lines = [
                f"# console page timings — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                "",
                "1,000,000 jobs (880k succeeded, 20k cancelled, 97k queued, 3k running; 20 queues,"
                " 30 kinds), 100,000 dead letters (90k open) and 2,000 five-step workflows (a"
                " tenth cancelled); `VACUUM ANALYZE` after the build."
                f" {args.rounds} reads per page after one warm-up; server time from the"
                " `Server-Timing` header (queries + rendering), round trip from httpx.",
                "",
                "| page | server p50 ms | server p95 ms | server max ms | round trip p50 ms |",
                "|---|---:|---:|---:|---:|",
            ]
            for label, path in paths:
                server_ms, wall_ms = measure(client, path, args.rounds)
                p95 = statistics.quantiles(server_ms, n=20)[-1]
                lines.append(
                    f"| {label} | {statistics.median(server_ms):.1f} | {p95:.1f} |"
                    f" {max(server_ms):.1f} | {statistics.median(wall_ms):.1f} |"
                )
            if args.screenshots:
                screenshots(url, paths, args.screenshots)
        report = "\n".join(lines) + "\n"
        print(report)
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"console-{datetime.now(UTC):%Y%m%d-%H%M%S}.md"
        out.write_text(report)
        print(f"written to {out}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
