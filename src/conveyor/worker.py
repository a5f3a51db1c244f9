"""The worker: claims jobs in batches, runs handlers concurrently, renews leases off the event
loop, and completes or fails each attempt with its lease token. Rules (order, backoff, fencing)
stay in SQL; this module only schedules calls.

Its parts: the lifecycle (here), the claims (claimer.py), running a handler (invoker.py), recording
what became of an attempt (outcomes.py, with the batching completer.py), and lease renewal
with the heartbeat on their own thread (lease.py), which shares the running jobs with the loop
(inflight.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from conveyor import db, tick
from conveyor.calls import Statement, acall
from conveyor.claimer import Claimer
from conveyor.errors import ConfigError, ConveyorError, LeaseLost
from conveyor.handlers import Fail, Handler, JobContext, Registry, Retry, Snooze
from conveyor.heartbeat import Heartbeat, process_metadata
from conveyor.inflight import Inflight, RunningJob
from conveyor.invoker import Invoker
from conveyor.jobs import ClaimedJob
from conveyor.lease import Lease, LeaseKeeper
from conveyor.notify import Listener
from conveyor.outcomes import Outcomes, WorkerStats, error_text
from conveyor.types import JsonObject

__all__ = ["REQUIRED_PHASES", "Worker", "WorkerConfig", "WorkerStats", "default_name"]

log = logging.getLogger(__name__)

REQUIRED_PHASES = (0, 1, 2)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and runs jobs."""

    name: str | None = None
    queues: tuple[str, ...] | None = None
    concurrency: int = 10
    batch: int | None = None  # None: up to the free slots (fn_job_claim bounds it)
    lease_seconds: int | None = None  # None: the database's queue.lease.default_seconds
    poll_interval: float = 0.5
    grace_period: float = 30.0
    summary_every: float = 60.0
    heartbeat_seconds: int = 5
    executor: str | None = None  # phase 4: claim only kinds this executor is subscribed to
    check_phases: bool = True
    # gc.freeze() at start: the objects alive then (modules, the app) leave the cycle collector's
    # sight, so its full collections stop walking them every few thousand jobs (~12 % of a
    # no-op drain, bench/results/perf5-20261205.md). Turn it off in an app that starts a worker
    # early and later drops cyclic structures built before that: frozen ones are never collected.
    freeze_gc: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be ≥ 1, got {self.concurrency}")
        if self.lease_seconds is not None and self.lease_seconds < 3:  # renewal needs the room
            raise ConfigError(f"lease_seconds must be ≥ 3, got {self.lease_seconds}")
        if self.poll_interval <= 0:
            raise ConfigError(f"poll_interval must be > 0 seconds, got {self.poll_interval}")


def default_name() -> str:
    """host:pid:random — unique per incarnation, so a restart never inherits old leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs the handlers of *registry* against the database at *url*."""

    def __init__(self, registry: Registry, url: str, config: WorkerConfig | None = None) -> None:
        if not len(registry):
            raise ConfigError("the worker's registry has no handlers")
        self.registry = registry
        self.url = url
        self.config = config or WorkerConfig()
        self.name = self.config.name or default_name()
        self.stats = WorkerStats()
        self._inflight = Inflight()
        self._stopping = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._claimer = Claimer(
            self.name,
            self.config,
            self.registry.kinds,
            self._inflight,
            self.stats,
            self._stopping,
            self._start,
            self._call,
            self._connection,
            self._reconnect_if_broken,
        )
        self._outcomes = Outcomes(self._call, self.stats)
        self._outcomes.completer.send = self._claimer.complete_then_claim
        self._reconnecting = asyncio.Lock()  # many jobs may notice one broken connection at once
        self._invoker = Invoker(url, self.name, self.config.concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listener: Listener | None = None
        self._keeper: LeaseKeeper | None = None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the worker to drain: stop claiming, finish running handlers, release the rest."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run(self) -> WorkerStats:
        """Claim and run jobs until `stop()`; then drain gracefully and return the counters."""
        self._loop = self._claimer.loop = asyncio.get_running_loop()
        self._conn = await self._connect()
        applied = await self._check_phases()
        if self.config.freeze_gc:
            gc.freeze()
        beat = None
        if 3 in applied:
            metadata = {
                "queues": list(self.config.queues or ["default"]),
                "kinds": self.registry.kinds,
            }
            beat = Heartbeat(
                self.name, "worker", self.config.heartbeat_seconds, process_metadata(metadata)
            )
        keeper = LeaseKeeper(
            self.url,
            self.name,
            self.config.lease_seconds,
            self._inflight.leases,
            self._on_lease_event,
            beat,
        )
        keeper.start()
        self._keeper = self._claimer.keeper = keeper
        listener: asyncio.Task[None] | None = None
        if 3 in applied:  # the NOTIFY bridge exists from phase 3 on (it may still be switched off)
            self.listener = Listener(self.url, self.name, self.wake, take_turns=True)
            listener = asyncio.create_task(
                self.listener.run(self._stopping), name="conveyor-listen"
            )
        flusher = asyncio.create_task(self._outcomes.completer.run(), name="conveyor-completions")
        summary = asyncio.create_task(self._summary_loop(), name="conveyor-summary")
        log.info(
            "worker %s started: kinds=%s queues=%s concurrency=%s",
            self.name,
            self.registry.kinds,
            self.config.queues or ["default"],
            self.config.concurrency,
        )
        try:
            await self._claimer.run()
            await self._drain()
        finally:
            summary.cancel()
            if listener is not None:
                listener.cancel()
            await self._outcomes.completer.flush()
            flusher.cancel()
            keeper.stop()
            await self._invoker.close()
            await self._conn.close()
            log.info("worker %s stopped: %s", self.name, self.stats)
        return self.stats

    def run_forever(self) -> WorkerStats:
        """Run in a new event loop with SIGTERM/SIGINT draining (a second signal exits at once)."""

        async def main() -> WorkerStats:
            loop = asyncio.get_running_loop()
            signals = 0

            def on_signal(signum: int) -> None:
                nonlocal signals
                signals += 1
                if signals > 1:
                    log.warning("second signal: exiting now; leases return through the reaper")
                    os._exit(128 + signum)
                log.warning("signal %s: draining (send again to exit at once)", signum)
                self._stopping.set()
                self._claimer.wakeup.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, on_signal, signum)
            return await self.run()

        return asyncio.run(main())

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await db.connect_async(
            self.url, autocommit=True, application_name=f"conveyor-worker:{self.name}"[:63]
        )

    async def _check_phases(self) -> set[int]:
        """The applied phases; refuses to start without the ones the worker needs."""
        assert self._conn is not None
        found: list[int] = []
        if await self._has_meta():
            cursor = await self._conn.execute(tick.APPLIED_SQL)
            row = await cursor.fetchone()
            found = sorted(row[0]) if row else []
        required = [*REQUIRED_PHASES, 4] if self.config.executor else list(REQUIRED_PHASES)
        missing = [p for p in required if p not in found]
        if missing and self.config.check_phases:
            raise ConfigError(
                f"found phases {found or 'none'}, need {required}: run "
                f"`conveyor phase apply {missing[0]}` (after `conveyor phase ratify {missing[0]}`)"
            )
        return set(found)

    async def _has_meta(self) -> bool:
        assert self._conn is not None
        cursor = await self._conn.execute("SELECT to_regclass('conveyor_meta.phase_state')")
        row = await cursor.fetchone()
        return row is not None and row[0] is not None

    # ------------------------------------------------------------------ claiming (claimer.py)

    def wake(self) -> None:
        """Make the claim loop look for work now (thread-safe; used by the NOTIFY bridge)."""
        self._claimer.wake()

    async def _reconnect_if_broken(self) -> None:
        async with self._reconnecting:  # one new connection, not one per waiting job
            if self._conn is not None and not self._conn.closed and not self._conn.broken:
                return
            try:
                broken, self._conn = self._conn, await self._connect()
                log.info("worker %s reconnected", self.name)
            except psycopg.OperationalError as error:
                log.warning("worker %s: reconnect failed: %s", self.name, str(error).strip()[:200])
                return
            if broken is not None:
                await broken.close()

    # ------------------------------------------------------------------ running handlers

    def _start(self, job: ClaimedJob, lease: Lease) -> None:
        handler = self.registry.get(job.kind)
        context = JobContext(job=job, worker=self.name)
        entry = RunningJob(job=job, context=context, lease=lease)
        self._inflight.add(entry)
        entry.task = asyncio.create_task(self._execute(handler, entry), name=f"job-{job.job_id}")

    async def _execute(self, handler: Handler | None, entry: RunningJob) -> None:
        job, outcomes = entry.job, self._outcomes
        try:
            if handler is None:  # claimed by kind filter, so only if the registry changed
                await outcomes.failed(job, f"no handler for kind {job.kind!r}")
                return
            try:
                result = await self._invoke(handler, entry)
            except Snooze as snooze:
                await outcomes.snoozed(job, snooze.seconds)
            except Retry as retry:
                await outcomes.failed(job, str(retry), retry.in_seconds)
            except Fail as fail:
                await outcomes.dead_letter(job, error_text(fail))
            except asyncio.CancelledError:
                await self._after_cancel(entry)
            except TimeoutError:
                await outcomes.failed(job, f"timed out after {handler.timeout} s")
            except Exception as error:  # any other exception is the job's failure, not ours
                await outcomes.failed(job, error_text(error))
            else:
                await outcomes.succeeded(job, result, recorded=handler.transactional)
        except LeaseLost:
            outcomes.lease_lost(job, "lease lost; result discarded")
        except (psycopg.Error, ConveyorError) as error:  # Refused, InvalidInput, …
            log.error(
                "job %s: could not record its outcome (%s); the lease will expire and "
                "the reaper will hand it out again",
                job.job_id,
                error,
            )
        finally:
            self._inflight.remove(job.job_id)
            self._claimer.wakeup.set()

    async def _invoke(self, handler: Handler, entry: RunningJob) -> Any:
        if entry.lease_lost or entry.cancel_requested:
            raise asyncio.CancelledError
        # A lease event cancels the job's task only while it is inside the handler: once the
        # handler has returned, recording its outcome runs to the end (the SQL fences a lost
        # lease). One task per job, not a second one for the handler (~4 µs a job).
        entry.in_handler = True
        try:
            return await self._invoker.invoke(handler, entry.context)
        finally:
            entry.in_handler = False

    async def _after_cancel(self, entry: RunningJob) -> None:
        job = entry.job
        if entry.lease_lost:
            self._outcomes.lease_lost(job, "lease lost while running; handler cancelled")
        elif entry.cancel_requested:
            await self._outcomes.cancelled(job)
        else:  # shutdown: give the job back without spending the attempt
            await self._outcomes.released(job)

    def _connection(self) -> psycopg.AsyncConnection[Any]:
        assert self._conn is not None
        return self._conn

    async def _call(self, statement: Statement) -> JsonObject:
        """Run an outcome call, reconnecting once if the connection broke meanwhile."""
        await self._reconnect_if_broken()
        assert self._conn is not None
        return await acall(self._conn, *statement)

    # ------------------------------------------------------------------ leases and shutdown

    def _on_lease_event(self, job_id: int, event: str) -> None:
        """From the lease thread: 'lost' or 'cancel' for a running job → cancel its handler."""
        entry = self._inflight.flag(job_id, event)
        if entry is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_handler, entry)

    @staticmethod
    def _cancel_handler(entry: RunningJob) -> None:
        """Cancel a running handler; a job already recording its outcome is left to finish."""
        if entry.in_handler and entry.task is not None:
            entry.task.cancel()

    async def _drain(self) -> None:
        async with (
            self._claimer.claiming
        ):  # a claim sent with completions before the stop lands first
            tasks = self._inflight.tasks()
        if tasks:
            log.info(
                "worker %s: draining %s running jobs (grace %.0f s)",
                self.name,
                len(tasks),
                self.config.grace_period,
            )
            _done, pending = await asyncio.wait(tasks, timeout=self.config.grace_period)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)

    async def _summary_loop(self) -> None:
        last = time.monotonic()
        done_before = 0
        while True:
            await asyncio.sleep(self.config.summary_every)
            now = time.monotonic()
            done = self.stats.succeeded
            log.info(
                "worker %s: %s succeeded (%.1f/s), %s retried, %s dead-lettered, %s running",
                self.name,
                done,
                (done - done_before) / (now - last),
                self.stats.retried,
                self.stats.dead_lettered,
                len(self._inflight),
            )
            last, done_before = now, done
