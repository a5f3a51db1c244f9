"""Run by test_spans.py in a subprocess of its own (a tracer provider is set once per process):
enqueue jobs under a parent span, run them with an in-process Worker, print what happened as
JSON. ``scenario.py DSN QUEUE otel`` exports spans to memory; ``… absent`` blocks opentelemetry
(sys.modules) before conveyor is imported, as if the extra were not installed."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any

DSN, QUEUE, MODE = sys.argv[1:4]
if MODE == "absent":
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import now fails

import psycopg  # noqa: E402

from conveyor import aio, jobs, tracing  # noqa: E402
from conveyor.handlers import Fail, JobContext, Registry, Snooze  # noqa: E402
from conveyor.worker import Worker, WorkerConfig  # noqa: E402

SECRET = {"card": "4111-1111-1111-1111"}
seen: dict[str, Any] = {}
registry = Registry()


@registry.handler("trace.ok")
def ok(job: JobContext) -> dict[str, Any]:  # sync: runs on a handler thread
    seen["ok_payload"] = job.job.payload
    if tracing.ENABLED:
        from opentelemetry import trace

        seen["ok_current_span"] = trace.get_current_span().get_span_context().span_id
    return {"done": True}


@registry.handler("trace.fail")
async def fail(job: JobContext) -> None:
    seen["fail"] = True
    raise Fail("no such card")


@registry.handler("trace.snooze")
async def snooze(job: JobContext) -> None:
    seen["snooze"] = True
    raise Snooze(3600)


@registry.handler("trace.many")
async def many(job: JobContext) -> None:
    seen.setdefault("many", []).append(job.job.payload)


async def enqueue_async() -> int:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        return await aio.enqueue(conn, "trace.snooze", SECRET, queue=QUEUE)


def main() -> None:
    exporter: Any = None
    if MODE == "otel":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("request"), psycopg.connect(DSN) as conn:
            ids = _enqueue_all(conn)
        ids.append(asyncio.run(enqueue_async()))
    else:
        with psycopg.connect(DSN) as conn:
            ids = _enqueue_all(conn)
    with psycopg.connect(DSN, autocommit=True) as conn:
        stored = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT id, payload FROM conveyor.job_queue WHERE id = ANY(%s)", (ids,)
            )
        }
    worker = Worker(registry, DSN, WorkerConfig(queues=(QUEUE,), poll_interval=0.05))
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
    thread.start()
    try:
        deadline = time.monotonic() + 60  # a failure guard; the jobs run in well under a second
        while not ({"ok_payload", "fail"} <= seen.keys() and len(seen.get("many", [])) == 2):
            if time.monotonic() > deadline:
                raise SystemExit(f"jobs did not run: {seen}")
            time.sleep(0.05)
        if MODE == "otel":
            while sum(s.name.startswith("conveyor run") for s in exporter.get_finished_spans()) < 5:
                if time.monotonic() > deadline:
                    raise SystemExit("run spans missing")
                time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=60)
    spans = []
    for span in exporter.get_finished_spans() if exporter else ():
        spans.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": span.context.trace_id,
                "span_id": span.context.span_id,
                "parent": span.parent.span_id if span.parent else None,
                "attributes": dict(span.attributes or {}),
                "events": [e.name for e in span.events],
                "status": span.status.status_code.name,
            }
        )
    out = {"ids": ids, "stored": {str(k): v for k, v in stored.items()}, "seen": seen}
    print(json.dumps({**out, "spans": spans, "enabled": tracing.ENABLED}, default=list))


def _enqueue_all(conn: psycopg.Connection[Any]) -> list[int]:
    ids = [
        jobs.enqueue(conn, "trace.ok", SECRET, queue=QUEUE),
        jobs.enqueue(conn, "trace.fail", SECRET, queue=QUEUE),
    ]
    ids += jobs.enqueue_many(
        conn,
        [{"kind": "trace.many", "payload": {"n": n, **SECRET}, "queue": QUEUE} for n in (1, 2)],
    )
    conn.commit()
    return ids


if __name__ == "__main__":
    main()
