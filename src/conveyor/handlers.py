"""Handler registry: job kind → a plain function (async or sync) that does the work.

A handler receives a `JobContext` and returns a JSON-able result (or None). It can end the
attempt differently by raising `Snooze`, `Retry` or `Fail`; any other exception is a
transient failure (retried with backoff until max_attempts, then dead-lettered).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from conveyor import workflow
from conveyor.errors import ConfigError
from conveyor.jobs import ClaimedJob
from conveyor.types import JsonObject


class HandlerOutcome(Exception):
    """Base of the exceptions a handler raises to choose how its attempt ends."""


class Snooze(HandlerOutcome):
    """Run the job again after *seconds*, without spending an attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"snooze {seconds} s")
        self.seconds = seconds


class Retry(HandlerOutcome):
    """Fail this attempt and retry (after *in_seconds*, else the configured backoff)."""

    def __init__(self, reason: str = "retry requested", in_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.in_seconds = in_seconds


class Fail(HandlerOutcome):
    """Fail permanently: the job goes to the dead letter queue at once."""


@dataclass(slots=True)
class JobContext:
    """What a handler gets: the job, a cancellation signal and (if transactional) a connection.

    ``conn`` is set only for handlers registered with ``transactional=True``: a psycopg
    connection inside the transaction that will also complete the job, so the handler's writes
    and the completion commit together (async handlers get an AsyncConnection).
    """

    job: ClaimedJob
    worker: str
    conn: Any = None
    # A plain flag, not a threading.Event (~11 µs a job to build, bench/results/perf3-*.md):
    # nothing waits on it; the loop or the lease thread sets it, handler threads read it, and
    # one attribute store is atomic under the GIL.
    _cancelled: bool = False

    @property
    def payload(self) -> JsonObject:
        return self.job.payload

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its lease lost: stop work and return."""
        return self._cancelled

    def parents(self, conn: Any = None) -> dict[str, workflow.Parent]:
        """This workflow step's parents with their results ({} for a plain job), read through
        fn_job_workflow_parents on *conn*, else on the transactional handler's ``conn``.
        Async handlers: ``await conveyor.workflow.aparents(conn, job.job.job_id)``."""
        target = conn if conn is not None else self.conn
        if not isinstance(target, psycopg.Connection):
            raise ConfigError(
                f"job {self.job.job_id}: parents() needs a psycopg Connection: pass one, or "
                "register the handler with transactional=True (async: workflow.aparents)"
            )
        return workflow.parents(target, self.job.job_id)

    def raise_if_cancelled(self) -> None:
        """Raise asyncio.CancelledError when the job should stop (cooperative cancellation)."""
        if self._cancelled:
            raise asyncio.CancelledError("job cancelled")

    def _cancel(self) -> None:
        """Signal the handler to stop (from the worker's loop or its lease thread)."""
        self._cancelled = True


HandlerFunc = Callable[[JobContext], Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler and its options."""

    kind: str
    func: HandlerFunc
    timeout: float | None
    transactional: bool
    # Asked once, not per job (inspect.iscoroutinefunction costs ~1 µs a call).
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))


class Registry:
    """Maps job kinds to handlers; a worker claims only the kinds registered here."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def handler(
        self, kind: str, *, timeout: float | None = None, transactional: bool = False
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the decorated function for *kind*.

        *timeout* (seconds) bounds one attempt; past it the attempt fails as transient.
        *transactional* hands the handler the worker's connection (see JobContext.conn).
        """
        if not kind:
            raise ConfigError("a handler needs a non-empty job kind")
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"handler {kind!r}: timeout must be > 0 seconds, got {timeout}")

        def register(func: HandlerFunc) -> HandlerFunc:
            if kind in self._handlers:
                raise ConfigError(f"job kind {kind!r} already has a handler")
            self._handlers[kind] = Handler(kind, func, timeout, transactional)
            return func

        return register

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


def load(spec: str) -> Registry:
    """Import ``module:attribute`` and return the Registry it names (for `--app`)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--app {spec!r}: expected MODULE:REGISTRY, e.g. myapp.jobs:registry")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"--app {spec!r}: cannot import {module_name}: {error}") from error
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Registry):
        raise ConfigError(
            f"--app {spec!r}: {module_name}.{attribute} is not a conveyor.handlers.Registry"
        )
    if not len(registry):
        raise ConfigError(f"--app {spec!r}: the registry has no handlers")
    return registry
