"""OpenTelemetry spans around enqueue and handler execution, when ``opentelemetry-api`` is there.

`traced_enqueue`/`traced_enqueue_many` (and their asyncio twins) decorate the client's enqueue
functions: a PRODUCER span ``conveyor enqueue <kind>`` with the kind, queue and job id (never
the payload), whose W3C trace context is written into the job. The job has no column for it
(fn_job_enqueue takes none), so it goes under one reserved payload key, `TRACE_KEY`
(``{"traceparent": …, "tracestate": …}``), only while a tracer provider is set up (a valid
span context). `traced_invoke` decorates the invoker: a CONSUMER span ``conveyor run <kind>``
whose parent is the enqueuing span, with the outcome (succeeded, failed_transient,
failed_permanent, snoozed, cancelled) and the exception recorded. The handler sees the payload
without `TRACE_KEY`, and the code it runs (a sync handler on its thread too) is inside that
span, so the jobs it enqueues continue the trace.

Without opentelemetry installed every decorator returns the function itself: no cost at all.
With the API installed but no tracer provider set up (the global one is still OpenTelemetry's
proxy, or its no-op), each call checks that (`_live`, ≈2.5 µs; the worker at most twice a second)
and runs undecorated: a span on the proxy costs ≈17 µs, more than the rest of the worker's
per-job Python path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from conveyor.types import JsonObject

if TYPE_CHECKING:  # conveyor.handlers imports jobs, which imports this module
    from opentelemetry.trace import Span

    from conveyor.handlers import Handler, JobContext

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the optional extra `otel` is not installed
    otel_context = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]

ENABLED = trace is not None
TRACE_KEY = "_conveyor_trace"
SYSTEM = "conveyor"

F = TypeVar("F", bound=Callable[..., Any])


_provider_set = False
_checked_at = -1e9  # time.monotonic() of the last lookup
_RECHECK = 0.5


def _live(*, throttled: bool = False) -> bool:
    """True once a real tracer provider is set up (it can be set only once, so this latches).

    *throttled* (the worker, once per job): until a provider is set, look it up at most every
    `_RECHECK` seconds, since the lookup reads the environment (≈1 µs, ~5 % of a no-op drain);
    jobs started within that time of the provider being set run without a span.
    """
    global _provider_set, _checked_at
    if not _provider_set:
        now = time.monotonic()
        if throttled and now - _checked_at < _RECHECK:
            return False
        _checked_at = now
        assert trace is not None
        provider = trace.get_tracer_provider()
        _provider_set = not isinstance(
            provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        )
    return _provider_set


def _tracer() -> Any:
    assert trace is not None
    return trace.get_tracer("conveyor")


def with_trace(payload: JsonObject | None) -> JsonObject | None:
    """*payload* plus the current trace context under TRACE_KEY (unchanged when none)."""
    if propagate is None:
        return payload
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if "traceparent" not in carrier:
        return payload
    return {**(payload or {}), TRACE_KEY: carrier}


def without_trace(payload: JsonObject) -> JsonObject:
    """*payload* without TRACE_KEY (what the handler is given)."""
    if TRACE_KEY not in payload:
        return payload
    return {k: v for k, v in payload.items() if k != TRACE_KEY}


@contextmanager
def _enqueue_span(name: str, attributes: dict[str, Any]) -> Iterator[Span]:
    assert trace is not None
    attrs = {"messaging.system": SYSTEM, "messaging.operation.type": "send", **attributes}
    with _tracer().start_as_current_span(
        name, kind=trace.SpanKind.PRODUCER, attributes=attrs
    ) as span:
        yield span


def _job_attributes(kind: Any, queue: Any) -> dict[str, Any]:
    return {"conveyor.job.kind": str(kind), "conveyor.job.queue": str(queue or "default")}


def traced_enqueue(func: F) -> F:
    """Decorate ``enqueue(conn, kind, payload=None, *, queue=…, …) -> int``."""
    if not ENABLED:
        return func

    @functools.wraps(func)
    def wrapper(conn: Any, kind: str, payload: JsonObject | None = None, **kw: Any) -> int:
        if not _live():
            return int(func(conn, kind, payload, **kw))
        with _enqueue_span(f"conveyor enqueue {kind}", _job_attributes(kind, kw.get("queue"))) as s:
            job_id = int(func(conn, kind, with_trace(payload), **kw))
            s.set_attribute("conveyor.job.id", job_id)
            return job_id

    return cast(F, wrapper)


def traced_aenqueue(func: F) -> F:
    """`traced_enqueue` for the asyncio client."""
    if not ENABLED:
        return func

    @functools.wraps(func)
    async def wrapper(conn: Any, kind: str, payload: JsonObject | None = None, **kw: Any) -> int:
        if not _live():
            return int(await func(conn, kind, payload, **kw))
        with _enqueue_span(f"conveyor enqueue {kind}", _job_attributes(kind, kw.get("queue"))) as s:
            job_id = int(await func(conn, kind, with_trace(payload), **kw))
            s.set_attribute("conveyor.job.id", job_id)
            return job_id

    return cast(F, wrapper)


def _many_span(jobs: list[JsonObject]) -> Any:
    kinds = sorted({str(job.get("kind")) for job in jobs})
    return _enqueue_span(
        "conveyor enqueue_many",
        {"conveyor.job.kinds": kinds, "messaging.batch.message_count": len(jobs)},
    )


def _traced_jobs(jobs: list[JsonObject]) -> list[JsonObject]:
    return [{**job, "payload": with_trace(job.get("payload"))} for job in jobs]


def traced_enqueue_many(func: F) -> F:
    """Decorate ``enqueue_many(conn, jobs) -> list[int]``: one span for the batch."""
    if not ENABLED:
        return func

    @functools.wraps(func)
    def wrapper(conn: Any, jobs: Iterable[JsonObject]) -> list[int]:
        items = list(jobs)
        if not items or not _live():
            return list(func(conn, items))
        with _many_span(items) as span:
            ids = list(func(conn, _traced_jobs(items)))
            span.set_attribute("conveyor.job.ids", ids)
            return ids

    return cast(F, wrapper)


def traced_aenqueue_many(func: F) -> F:
    """`traced_enqueue_many` for the asyncio client."""
    if not ENABLED:
        return func

    @functools.wraps(func)
    async def wrapper(conn: Any, jobs: Iterable[JsonObject]) -> list[int]:
        items = list(jobs)
        if not items or not _live():
            return list(await func(conn, items))
        with _many_span(items) as span:
            ids = list(await func(conn, _traced_jobs(items)))
            span.set_attribute("conveyor.job.ids", ids)
            return ids

    return cast(F, wrapper)


def outcome_of(error: BaseException | None) -> str:
    """The outcome attribute for a handler that raised *error* (None: it returned)."""
    from conveyor.handlers import Fail, Snooze

    if error is None:
        return "succeeded"
    if isinstance(error, Snooze):
        return "snoozed"
    if isinstance(error, Fail):
        return "failed_permanent"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "failed_transient"  # Retry, a timeout, any other exception (the SQL may dead-letter)


def _in_context(func: Callable[[JobContext], Any], ctx: Any) -> Callable[[JobContext], Any]:
    """A sync handler that runs inside *ctx* in whatever thread runs it."""
    assert otel_context is not None

    def run(job_context: JobContext) -> Any:
        token = otel_context.attach(ctx)
        try:
            return func(job_context)
        finally:
            otel_context.detach(token)

    return run


def traced_invoke(func: F) -> F:
    """Decorate ``Invoker.invoke(self, handler, context)`` with the handler's span."""
    if not ENABLED:
        return func

    @functools.wraps(func)
    async def wrapper(self: Any, handler: Handler, context: JobContext) -> Any:
        assert trace is not None and propagate is not None and otel_context is not None
        job = context.job
        if not _live(throttled=True):
            if TRACE_KEY in job.payload:  # enqueued by a traced producer: the handler never sees it
                context.job = dataclasses.replace(job, payload=without_trace(job.payload))
            return await func(self, handler, context)
        carrier = job.payload.get(TRACE_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        context.job = dataclasses.replace(job, payload=without_trace(job.payload))
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            **_job_attributes(job.kind, job.queue),
            "conveyor.job.id": job.job_id,
            "conveyor.job.attempt": job.attempts,
            "conveyor.job.max_attempts": job.max_attempts,
            "conveyor.worker": context.worker,
        }
        with _tracer().start_as_current_span(
            f"conveyor run {job.kind}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if not handler.is_async:
                run = _in_context(handler.func, otel_context.get_current())
                handler = dataclasses.replace(handler, func=run)
            try:
                result = await func(self, handler, context)
            except BaseException as error:
                _record(span, error)
                raise
            span.set_attribute("conveyor.job.outcome", "succeeded")
            return result

    return cast(F, wrapper)


def _record(span: Span, error: BaseException) -> None:
    from conveyor.handlers import Retry, Snooze

    assert trace is not None
    outcome = outcome_of(error)
    span.set_attribute("conveyor.job.outcome", outcome)
    if isinstance(error, Snooze):
        span.set_attribute("conveyor.job.snooze_seconds", float(error.seconds))
        return
    if isinstance(error, Retry) and error.in_seconds is not None:
        span.set_attribute("conveyor.job.retry_in_seconds", float(error.in_seconds))
    if isinstance(error, asyncio.CancelledError):
        return
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
