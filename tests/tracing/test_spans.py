"""OpenTelemetry spans: a job's handler span continues the trace of the span that enqueued it;
no payload reaches an attribute; without opentelemetry nothing changes. Each case runs
scenario.py in a subprocess (a tracer provider is global to its process) with an in-process
Worker against this module's database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import prepare_worker_database, unique

SCENARIO = Path(__file__).with_name("scenario.py")
SECRET = "4111-1111-1111-1111"


@pytest.fixture(scope="module")
def worker_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2, 3), "test_effect")
    return dsn


def run_scenario(dsn: str, mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, str(SCENARIO), dsn, unique("q"), mode],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_handler_span_continues_the_trace_of_the_enqueue_span(worker_dsn: str) -> None:
    out = run_scenario(worker_dsn, "otel")
    assert out["enabled"] is True
    spans = out["spans"]
    by_id = {s["span_id"]: s for s in spans}
    (request,) = [s for s in spans if s["name"] == "request"]
    runs = [s for s in spans if s["name"].startswith("conveyor run ")]
    assert len(runs) == 5
    for run in runs:
        assert run["kind"] == "CONSUMER"
        enqueue = by_id[run["parent"]]  # the parent is the span that enqueued the job
        assert enqueue["kind"] == "PRODUCER"
        assert enqueue["trace_id"] == run["trace_id"]
        job_id = run["attributes"]["conveyor.job.id"]
        assert job_id == enqueue["attributes"].get("conveyor.job.id") or job_id in enqueue[
            "attributes"
        ].get("conveyor.job.ids", [])
    outcomes = {s["attributes"]["conveyor.job.kind"]: s["attributes"] for s in runs}
    assert outcomes["trace.ok"]["conveyor.job.outcome"] == "succeeded"
    assert outcomes["trace.fail"]["conveyor.job.outcome"] == "failed_permanent"
    assert outcomes["trace.snooze"]["conveyor.job.outcome"] == "snoozed"
    (failed,) = [s for s in runs if s["attributes"]["conveyor.job.kind"] == "trace.fail"]
    assert failed["events"] == ["exception"] and failed["status"] == "ERROR"
    # The jobs enqueued inside the request continue its trace; the async one started its own.
    sync_enqueues = [s for s in spans if s["parent"] == request["span_id"]]
    assert len(sync_enqueues) == 3
    assert {s["trace_id"] for s in sync_enqueues} == {request["trace_id"]}
    # A sync handler runs inside its span (on its thread), and never sees the trace key.
    (ok,) = [s for s in runs if s["attributes"]["conveyor.job.kind"] == "trace.ok"]
    assert out["seen"]["ok_current_span"] == ok["span_id"]
    assert out["seen"]["ok_payload"] == {"card": SECRET}
    assert sorted(p["n"] for p in out["seen"]["many"]) == [1, 2]
    assert all("_conveyor_trace" not in p for p in out["seen"]["many"])
    # The stored job carries the trace context under the reserved key, nothing else added.
    for payload in out["stored"].values():
        assert payload["_conveyor_trace"]["traceparent"].startswith("00-")
    # No payload in any attribute.
    assert SECRET not in json.dumps(spans)


def test_without_opentelemetry_nothing_changes(worker_dsn: str) -> None:
    out = run_scenario(worker_dsn, "absent")
    assert out["enabled"] is False
    assert out["spans"] == []
    assert out["seen"]["ok_payload"] == {"card": SECRET}
    assert len(out["stored"]) == 4
    assert all("_conveyor_trace" not in p for p in out["stored"].values())


def test_with_the_api_but_no_tracer_provider_payloads_are_untouched(jobs: Any) -> None:
    from conveyor import jobs as client
    from conveyor import tracing

    job_id = client.enqueue(jobs, "trace.plain", {"a": 1}, queue=unique("q"))
    row = jobs.execute("SELECT payload FROM conveyor.job_queue WHERE id = %s", (job_id,))
    assert row.fetchone() == ({"a": 1},)
    assert tracing.with_trace({"a": 1}) == {"a": 1}
