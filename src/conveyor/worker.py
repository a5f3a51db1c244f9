"""The worker: claims jobs in batches, runs handlers concurrently, renews leases off the event
loop, and completes or fails each attempt with its lease token. Rules (order, backoff, fencing)
stay in SQL; this module only schedules calls."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor import jobs, tick
from conveyor.calls import Statement, acall, call
from conveyor.errors import ConfigError, Disabled, LeaseLost, Refused
from conveyor.handlers import Fail, Handler, JobContext, Registry, Retry, Snooze
from conveyor.heartbeat import Heartbeat, process_metadata
from conveyor.jobs import ClaimedJob
from conveyor.lease import Lease, LeaseKeeper
from conveyor.notify import Listener
from conveyor.types import JsonObject

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


@dataclass(slots=True)
class WorkerStats:
    """Counters for the periodic summary line and for callers of `run`."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    snoozed: int = 0
    cancelled: int = 0
    lease_lost: int = 0
    released: int = 0

    def __str__(self) -> str:
        """One readable line: ``12 claimed: 10 succeeded, 1 retried, 1 dead-lettered``."""
        outcomes = [
            f"{count} {label}"
            for label, count in (
                ("succeeded", self.succeeded),
                ("retried", self.retried),
                ("dead-lettered", self.dead_lettered),
                ("snoozed", self.snoozed),
                ("cancelled", self.cancelled),
                ("lease lost", self.lease_lost),
                ("released", self.released),
            )
            if count
        ]
        return f"{self.claimed} claimed" + (f": {', '.join(outcomes)}" if outcomes else "")


@dataclass(slots=True)
class _Inflight:
    job: ClaimedJob
    context: JobContext
    lease: Lease
    task: asyncio.Task[None] | None = None
    lease_lost: bool = False
    cancel_requested: bool = False


@dataclass(slots=True)
class _Completion:
    job: ClaimedJob
    done: asyncio.Future[bool] = field(  # True: completed; False: its lease was lost
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


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
        self._inflight: dict[int, _Inflight] = {}
        self._lock = threading.Lock()
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()  # set by the NOTIFY bridge (phase 3) or a freed slot
        self._completions: list[_Completion] = []
        self._flush_needed = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._reconnecting = asyncio.Lock()  # many jobs may notice one broken connection at once
        self._threads = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="conveyor-handler"
        )
        self._async_pool: AsyncConnectionPool | None = None
        self._sync_pool: ConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listener: Listener | None = None

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
            self._snapshot,
            self._on_lease_event,
            beat,
        )
        keeper.start()
        listener: asyncio.Task[None] | None = None
        if 3 in applied:  # the NOTIFY bridge exists from phase 3 on (it may still be switched off)
            self.listener = Listener(self.url, self.name, self.wake)
            listener = asyncio.create_task(
                self.listener.run(self._stopping), name="conveyor-listen"
            )
        flusher = asyncio.create_task(self._flush_loop(), name="conveyor-completions")
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
            self._flush_needed.set()
            await self._flush_completions()
            flusher.cancel()
            keeper.stop()
            self._threads.shutdown(wait=False, cancel_futures=True)
            if self._async_pool is not None:
                await self._async_pool.close()
            if self._sync_pool is not None:
                self._sync_pool.close()
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
        return await psycopg.AsyncConnection.connect(
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
            free = self.config.concurrency - len(self._inflight)
            if free <= 0:
                await self._wait(self.config.poll_interval)
                continue
            size = min(free, self.config.batch or free)
            try:
                claimed = await self._claim(size)
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
            for job, lease in claimed:
                self._start(job, lease)
            if len(claimed) < size:
                await self._wait(self.config.poll_interval)

    async def _claim(self, size: int) -> list[tuple[ClaimedJob, Lease]]:
        assert self._conn is not None
        statement = jobs.claim_statement(
            self.name,
            queues=self.config.queues,
            kinds=self.registry.kinds,
            batch=size,
            lease_seconds=self.config.lease_seconds,
            executor=self.config.executor,
        )
        sent = time.monotonic()  # the leases began after this instant
        claimed = jobs.parse_claim(await acall(self._conn, *statement))
        self.stats.claimed += len(claimed)
        return [(job, _lease(job, sent)) for job in claimed]

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
        entry = _Inflight(job=job, context=context, lease=lease)
        with self._lock:
            self._inflight[job.job_id] = entry
        entry.task = asyncio.create_task(self._execute(handler, entry), name=f"job-{job.job_id}")

    async def _execute(self, handler: Handler | None, entry: _Inflight) -> None:
        job = entry.job
        try:
            if handler is None:  # claimed by kind filter, so only if the registry changed
                await self._fail_transient(job, f"no handler for kind {job.kind!r}", None)
                return
            try:
                result = await self._invoke(handler, entry)
            except Snooze as snooze:
                await self._outcome(
                    jobs.snooze_statement(job.job_id, job.lease_token, snooze.seconds), "snoozed"
                )
            except Retry as retry:
                await self._fail_transient(job, str(retry), retry.in_seconds)
            except Fail as fail:
                error = _error_text(fail)
                await self._outcome(
                    jobs.fail_permanent_statement(job.job_id, job.lease_token, error),
                    "dead_lettered",
                )
                _log_failure(job, error, "dead-lettered (permanent failure)")
            except asyncio.CancelledError:
                await self._after_cancel(entry)
            except TimeoutError:
                await self._fail_transient(job, f"timed out after {handler.timeout} s", None)
            except Exception as error:  # any other exception is the job's failure, not ours
                await self._fail_transient(job, _error_text(error), None)
            else:
                if not handler.transactional:
                    await self._complete(job, result)
                else:
                    self.stats.succeeded += 1
        except LeaseLost:
            self._lease_lost(job, "lease lost; result discarded")
        except (psycopg.Error, Refused) as error:
            log.error(
                "job %s: could not record its outcome (%s); the lease will expire and "
                "the reaper will hand it out again",
                job.job_id,
                error,
            )
        finally:
            with self._lock:
                self._inflight.pop(job.job_id, None)
            self._wakeup.set()

    async def _invoke(self, handler: Handler, entry: _Inflight) -> Any:
        if entry.lease_lost or entry.cancel_requested:
            raise asyncio.CancelledError
        runner = self._run_transactional if handler.transactional else self._run_plain
        if handler.timeout is None:
            return await runner(handler, entry.context)
        return await asyncio.wait_for(runner(handler, entry.context), handler.timeout)

    async def _run_plain(self, handler: Handler, context: JobContext) -> Any:
        if handler.is_async:
            return await handler.func(context)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, handler.func, context)
        except asyncio.CancelledError:
            context._cancelled.set()  # the thread cannot be killed: ask it to stop
            raise

    async def _run_transactional(self, handler: Handler, context: JobContext) -> Any:
        """Run the handler and fn_job_complete in one transaction on a pooled connection."""
        job = context.job
        if handler.is_async:
            pool = await self._get_async_pool()
            async with pool.connection() as conn, conn.transaction():
                context.conn = conn
                result = await handler.func(context)
                await acall(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
                return result
        pool_sync = self._get_sync_pool()

        def run_in_thread() -> Any:
            with pool_sync.connection() as conn, conn.transaction():
                context.conn = conn
                result = handler.func(context)
                if context.cancelled:
                    raise asyncio.CancelledError("job cancelled")
                call(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
                return result

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, run_in_thread)
        except asyncio.CancelledError:
            context._cancelled.set()
            raise

    async def _get_async_pool(self) -> AsyncConnectionPool:
        if self._async_pool is None:
            self._async_pool = AsyncConnectionPool(
                self.url,
                min_size=0,
                max_size=self.config.concurrency,
                open=False,
                kwargs={"application_name": f"conveyor-worker-tx:{self.name}"[:63]},
            )
            await self._async_pool.open()
        return self._async_pool

    def _get_sync_pool(self) -> ConnectionPool:
        if self._sync_pool is None:
            self._sync_pool = ConnectionPool(
                self.url,
                min_size=0,
                max_size=self.config.concurrency,
                open=True,
                kwargs={"application_name": f"conveyor-worker-tx:{self.name}"[:63]},
            )
        return self._sync_pool

    async def _after_cancel(self, entry: _Inflight) -> None:
        job = entry.job
        if entry.lease_lost:
            self._lease_lost(job, "lease lost while running; handler cancelled")
        elif entry.cancel_requested:
            await self._outcome(jobs.cancel_ack_statement(job.job_id, job.lease_token), "cancelled")
        else:  # shutdown: give the job back without spending the attempt
            await self._outcome(jobs.release_statement(job.job_id, job.lease_token), "released")

    def _lease_lost(self, job: ClaimedJob, what: str) -> None:
        self.stats.lease_lost += 1
        log.warning("job %s: %s", job.job_id, what)

    async def _fail_transient(self, job: ClaimedJob, error: str, retry_in: float | None) -> None:
        answer = await self._call(
            jobs.fail_transient_statement(job.job_id, job.lease_token, error, retry_in)
        )
        if answer.get("status") == "dead_letter":
            self.stats.dead_lettered += 1
            _log_failure(job, error, "dead-lettered (attempts exhausted)")
        elif answer.get("status") == "queued":
            self.stats.retried += 1
            _log_failure(job, error, f"will retry at {answer.get('run_at')}")
        else:
            self.stats.retried += 1

    async def _outcome(self, statement: Statement, counter: str) -> None:
        await self._call(statement)
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    async def _call(self, statement: Statement) -> JsonObject:
        """Run an outcome call, reconnecting once if the connection broke meanwhile."""
        await self._reconnect_if_broken()
        assert self._conn is not None
        return await acall(self._conn, *statement)

    # ------------------------------------------------------------------ completions

    async def _complete(self, job: ClaimedJob, result: Any) -> None:
        if result is not None:
            await self._call(jobs.complete_statement(job.job_id, job.lease_token, result))
            self.stats.succeeded += 1
            return
        completion = _Completion(job)
        self._completions.append(completion)
        self._flush_needed.set()
        if not await completion.done:
            self._lease_lost(job, "lease lost; result discarded")

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_needed.wait()
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        """Complete every pending job in one fn_job_complete_many call (retried until it lands)."""
        backoff = 0.2
        while self._completions:
            self._flush_needed.clear()
            batch, self._completions = self._completions, []
            try:
                answer = await self._call(
                    jobs.complete_many_statement([(c.job.job_id, c.job.lease_token) for c in batch])
                )
            except (psycopg.OperationalError, Refused) as error:
                self._completions = batch + self._completions
                log.warning(
                    "completing %s jobs failed (%s); retrying in %.1f s",
                    len(batch),
                    type(error).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            completed = set(jobs.parse_complete_many(answer)[0])
            for completion in batch:
                done = completion.job.job_id in completed
                if done:
                    self.stats.succeeded += 1
                completion.done.set_result(done)
        self._flush_needed.clear()

    # ------------------------------------------------------------------ leases and shutdown

    def _snapshot(self) -> list[Lease]:
        """The lease of every running job; called from the lease thread."""
        with self._lock:
            return [e.lease for e in self._inflight.values() if not e.lease_lost]

    def _on_lease_event(self, job_id: int, event: str) -> None:
        """From the lease thread: 'lost' or 'cancel' for a running job → cancel its handler."""
        with self._lock:
            entry = self._inflight.get(job_id)
        if entry is None:
            return
        if event == "lost":
            entry.lease_lost = True
        else:
            entry.cancel_requested = True
        entry.context._cancelled.set()
        if self._loop is not None and entry.task is not None:
            self._loop.call_soon_threadsafe(entry.task.cancel)

    async def _drain(self) -> None:
        tasks = [e.task for e in list(self._inflight.values()) if e.task is not None]
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


def _log_failure(job: ClaimedJob, error: str, outcome: str) -> None:
    """One WARNING line a failed attempt: what failed and what happens next (never the payload)."""
    log.warning(
        "job %s (%s) failed on attempt %s of %s: %s; %s",
        job.job_id,
        job.kind,
        job.attempts,
        job.max_attempts,
        error,
        outcome,
    )


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"  # fn_job_fail_* cap its length
