"""The worker: claims jobs in batches, runs handlers concurrently, renews leases off the event
loop, and completes or fails each attempt with its lease token. Rules (order, backoff, fencing)
stay in SQL; this module only schedules calls.

Its parts: the claim loop and the lifecycle (here), running a handler (invoker.py), recording
what became of an attempt (outcomes.py, with the batching completer.py), and lease renewal
with the heartbeat on their own thread (lease.py), which shares the running jobs with the loop
(inflight.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from conveyor import db, jobs, tick
from conveyor.calls import Statement, acall, answer_or_raise
from conveyor.errors import ConfigError, ConveyorError, Disabled, LeaseLost, Refused
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
        self._wakeup = asyncio.Event()  # set by the NOTIFY bridge (phase 3) or a freed slot
        self._outcomes = Outcomes(self._call, self.stats)
        self._outcomes.completer.send = self._complete_then_claim
        self._claiming = asyncio.Lock()  # one claim at a time: slots are counted before it
        self._conn: psycopg.AsyncConnection[Any] | None = None
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
        self._loop = asyncio.get_running_loop()
        self._conn = await self._connect()
        applied = await self._check_phases()
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
        self._keeper = keeper
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
            await self._claim_loop()
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
                self._wakeup.set()

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

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self) -> None:
        backoff = 0.5
        disabled_logged = False
        while not self._stopping.is_set():
            size = self._claim_size()
            if size <= 0:
                await self._wait(self.config.poll_interval)
                continue
            try:
                async with self._claiming:
                    size = self._claim_size()  # a completion may have claimed meanwhile
                    claimed = await self._claim(size) if size > 0 else 0
                backoff = 0.5
                disabled_logged = False
            except Disabled as refusal:
                if not disabled_logged:
                    log.warning(
                        "worker %s: claims refused (%s); waiting", self.name, refusal.reason
                    )
                    disabled_logged = True
                await self._wait(max(self.config.poll_interval, 1.0))
                continue
            except (
                psycopg.OperationalError,
                psycopg.errors.QueryCanceled,
                psycopg.errors.LockNotAvailable,
                psycopg.errors.ReadOnlySqlTransaction,
            ) as error:
                log.warning(
                    "worker %s: claim failed (%s); retrying in %.1f s",
                    self.name,
                    type(error).__name__,
                    backoff,
                )
                await self._wait(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._reconnect_if_broken()
                continue
            if claimed < size:
                await self._wait(self.config.poll_interval)

    def _claim_size(self, freed: int = 0) -> int:
        """How many jobs to claim now: the free slots (counting *freed* ones), at most a batch."""
        free = self.config.concurrency - len(self._inflight) + freed
        return min(free, self.config.batch or free)

    def _claim_statement(
        self, size: int, after: Sequence[tuple[int, UUID]] | None = None
    ) -> Statement:
        return jobs.claim_statement(
            self.name,
            queues=self.config.queues,
            kinds=self.registry.kinds,
            batch=size,
            lease_seconds=self.config.lease_seconds,
            executor=self.config.executor,
            after=after,
        )

    async def _claim(self, size: int) -> int:
        """Claim up to *size* jobs and start them (under ``_claiming``); how many came."""
        assert self._conn is not None
        sent = time.monotonic()  # the leases began after this instant
        answer = await acall(self._conn, *self._claim_statement(size))
        return self._take(jobs.parse_claim(answer), sent)

    def _take(self, claimed: list[ClaimedJob], sent: float) -> int:
        self.stats.claimed += len(claimed)
        for job in claimed:
            self._start(job, _lease(job, sent))
        if claimed:
            self._wake_keeper(min(job.lease_seconds or 3.0 for job in claimed))
        return len(claimed)

    async def _complete_then_claim(self, pairs: Sequence[tuple[int, UUID]]) -> JsonObject:
        """The completer's batch; claims the slots it frees in the same call (one round trip).

        Only when the claim loop would claim them at once: not while it is claiming itself, not
        once stopping. A claim that fails (not the connection) falls back to completing alone;
        the claim loop meets the claim's trouble on its own next call.
        """
        size = (
            0
            if self._stopping.is_set() or self._claiming.locked()
            else self._claim_size(len(pairs))
        )
        if size <= 0:
            return await self._call(jobs.complete_many_statement(pairs))
        async with self._claiming:
            sent = time.monotonic()
            try:
                answer = await self._call(self._claim_statement(size, after=pairs))
            except (psycopg.OperationalError, Refused):
                raise
            except (psycopg.Error, ConveyorError):
                return await self._call(jobs.complete_many_statement(pairs))
            completion, claim = jobs.split_answer(answer)
            with contextlib.suppress(Refused):  # the completion answers the same refusal
                self._take(jobs.parse_claim(answer_or_raise(claim)), sent)
        return answer_or_raise(completion)

    def _wake_keeper(self, shortest: float) -> None:
        """Have the lease thread look at new leases now, if its next round could be too late.

        The keeper renews a lease once half of it is left and looks every sixth of the shortest
        lease it knows: new leases no shorter than that are seen in time without a wake-up. Waking
        it after every claim cost a thread switch per batch (the GIL handed to and fro on a busy
        machine: ~2 ms a claim, bench/results/perf2-*.md).
        """
        if self._keeper is not None and shortest / 6 < self._keeper.interval:
            self._keeper.wake()

    async def _wait(self, seconds: float) -> None:
        """Sleep until *seconds* pass, a wake-up arrives, or the worker stops."""
        self._wakeup.clear()
        waits = [
            asyncio.ensure_future(self._wakeup.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def wake(self) -> None:
        """Make the claim loop look for work now (thread-safe; used by the NOTIFY bridge)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

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
            self._wakeup.set()

    async def _invoke(self, handler: Handler, entry: RunningJob) -> Any:
        if entry.lease_lost or entry.cancel_requested:
            raise asyncio.CancelledError
        # Its own future, so a lease event cancels the handler only: once the handler has
        # returned, recording its outcome runs to the end (the SQL fences a lost lease).
        entry.handler = asyncio.ensure_future(self._invoker.invoke(handler, entry.context))
        return await entry.handler

    async def _after_cancel(self, entry: RunningJob) -> None:
        job = entry.job
        if entry.lease_lost:
            self._outcomes.lease_lost(job, "lease lost while running; handler cancelled")
        elif entry.cancel_requested:
            await self._outcomes.cancelled(job)
        else:  # shutdown: give the job back without spending the attempt
            await self._outcomes.released(job)

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
        if entry.handler is not None and not entry.handler.done():
            entry.handler.cancel()

    async def _drain(self) -> None:
        async with self._claiming:  # a claim sent with completions before the stop lands first
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


def _lease(job: ClaimedJob, sent: float) -> Lease:
    """The job's lease in local time, counted from *sent* (before the claim: never later)."""
    seconds = job.lease_seconds or 3.0  # an answer without claimed_at: assume the shortest
    return Lease(job.job_id, job.lease_token, seconds, sent + seconds)
