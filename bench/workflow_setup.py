"""What the workflow bench (bench/workflow.py) runs on: a scratch database with phases 0-4 and 6,
its 10,001-step templates, and `conveyor worker` processes running a no-op registry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conveyor.handlers import JobContext, Registry
from conveyor.phases import runner

HERE = Path(__file__).resolve().parent
KINDS = ("bench.step", "staging.mark", "staging.cut", "staging.verify_cut", "staging.cleanup")
registry = Registry()  # what the bench's worker processes run (`--app workflow_setup:registry`)


def _noop(job: JobContext) -> None:
    return None


for _kind in (*KINDS, "staging.cut_report"):
    registry.handler(_kind)(_noop)

Conn = psycopg.Connection[Any]


def scratch(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


def as_url(dsn: str) -> str:
    """A libpq key=value string as a postgresql:// URL (node's pg takes URLs only)."""
    p = conninfo_to_dict(dsn)
    auth = quote(str(p.get("user", "postgres")), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    host = str(p.get("host", "localhost"))
    return f"postgresql://{auth}@{host}:{p.get('port', 5432)}/{p.get('dbname', 'postgres')}"


def scalar(conn: Conn, query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def install(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for number in (0, 1, 2, 3, 4, 6):
            runner.ratify(conn, number, "bench")
            result = runner.apply(conn, number, "bench")
            assert result.gate is None or result.gate.passed, result.gate
        for key in ("queue.job_substrate.enabled", "workflow.mot.enabled"):
            conn.execute("SELECT conveyor.fn_config_set(%s, 'true', 'bench')", (key,))
        width = 10_000
        fan_out: list[dict[str, Any]] = [
            {"key": "root", "kind": "bench.step", "executor": "dot"}
        ] + [
            {"key": f"c{i}", "kind": "bench.step", "executor": "dot", "parents": ["root"]}
            for i in range(width)
        ]
        fan_in: list[dict[str, Any]] = [
            {"key": f"p{i}", "kind": "bench.step", "executor": "dot"} for i in range(width)
        ]
        fan_in.append(
            {
                "key": "join",
                "kind": "bench.step",
                "executor": "dot",
                "parents": [f"p{i}" for i in range(width)],
            }
        )
        for name, steps in (("bench.fan_out", fan_out), ("bench.fan_in", fan_in)):
            conn.execute("SELECT conveyor.fn_mot_template_register(%s, %s)", (name, Jsonb(steps)))


def reset(conn: Conn) -> None:
    conn.execute(
        "TRUNCATE conveyor.job_workflow_step, conveyor.job_workflow, conveyor.job_queue,"
        " conveyor.job_dead_letter"
    )
    conn.execute("VACUUM ANALYZE conveyor.job_queue")
    conn.execute("VACUUM ANALYZE conveyor.job_workflow_step")


class Workers:
    """Two `conveyor worker` processes running this module's no-op registry."""

    def __init__(self, url: str, poll: float, count: int = 2) -> None:
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": url,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "worker",
                    "--app",
                    "workflow_setup:registry",
                    "--concurrency",
                    "100",
                    "--batch",
                    "50",
                    "--poll-interval",
                    str(poll),
                    "--name",
                    f"bench-{i}",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(count)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_workers_ready(conn: Conn) -> None:
    """Run a plain job through the workers: they are up once it has succeeded."""
    job = scalar(conn, "SELECT conveyor.fn_job_enqueue('bench.step', '{}')")["job_id"]
    deadline = time.monotonic() + 60
    while (
        scalar(conn, "SELECT status FROM conveyor.job_queue WHERE id = %s", (job,)) != "succeeded"
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the bench workers did not start")
        time.sleep(0.05)


def wait_settled(conn: Conn, workflow_ids: list[int], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while scalar(
        conn,
        "SELECT count(*) FROM conveyor.job_workflow WHERE id = ANY(%s) AND status = 'active'",
        (workflow_ids,),
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("workflows did not finish")
        time.sleep(0.01)


def wait_drained(conn: Conn, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while scalar(
        conn, "SELECT count(*) FROM conveyor.job_queue WHERE status IN ('queued', 'in_progress')"
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not drain")
        time.sleep(0.01)
