"""The worker's claims: the claim loop, the claim sent along with a batch of completions, and the
waits between claims. How many jobs to claim is counted here from the free slots; which jobs,
in what order and with what lease is fn_job_claim's business."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from conveyor import jobs
from conveyor.calls import Statement, acall, answer_or_raise
from conveyor.errors import ConveyorError, Disabled, Refused
from conveyor.inflight import Inflight
from conveyor.jobs import ClaimedJob
from conveyor.lease import Lease, LeaseKeeper
from conveyor.outcomes import WorkerStats
from conveyor.types import JsonObject

if TYPE_CHECKING:
    from conveyor.worker import WorkerConfig

log = logging.getLogger("conveyor.worker")  # the worker's log: its claims are part of its story

Start = Callable[[ClaimedJob, Lease], None]
Call = Callable[[Statement], Awaitable[JsonObject]]


class Claimer:
    """Claims jobs for one worker into its free slots and hands each to *start*."""

    def __init__(
        self,
        name: str,
        config: WorkerConfig,
        kinds: list[str],
        inflight: Inflight,
        stats: WorkerStats,
        stopping: asyncio.Event,
        start: Start,
        call: Call,
        connection: Callable[[], psycopg.AsyncConnection[Any]],
        reconnect: Callable[[], Awaitable[None]],
    ) -> None:
        self.name = name
        self.config = config
        self.kinds = kinds
        self._inflight = inflight
        self.stats = stats
        self._stopping = stopping
        self._start = start
        self._call = call
        self._connection = connection
        self._reconnect_if_broken = reconnect
        self.wakeup = asyncio.Event()  # set by the NOTIFY bridge (phase 3) or a freed slot
        self.claiming = asyncio.Lock()  # one claim at a time: slots are counted before it
        self.keeper: LeaseKeeper | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.limit_wait: float | None = None  # the last claim's limit_wait_seconds (phase 8)

    async def run(self) -> None:
        """Claim until the worker stops: into free slots, then wait for a slot or a wake-up."""
        backoff = 0.5
        disabled_logged = False
        while not self._stopping.is_set():
            size = self.size()
            if size <= 0:
                await self.wait(self.config.poll_interval)
                continue
            try:
                async with self.claiming:
                    size = self.size()  # a completion may have claimed meanwhile
                    claimed = await self._claim(size) if size > 0 else 0
                backoff = 0.5
                disabled_logged = False
            except Disabled as refusal:
                if not disabled_logged:
                    log.warning(
                        "worker %s: claims refused (%s); waiting", self.name, refusal.reason
                    )
                    disabled_logged = True
                await self.wait(max(self.config.poll_interval, 1.0))
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
                await self.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._reconnect_if_broken()
                continue
            if claimed < size:
                await self.wait(self._next_claim_in())

    def _next_claim_in(self) -> float:
        """The wait after a claim that filled fewer slots than it asked for: the poll interval,
        or sooner when a queue's rate held the claim back and its bucket is full before then."""
        if self.limit_wait is None:
            return self.config.poll_interval
        return min(self.config.poll_interval, max(self.limit_wait, 0.001))

    def size(self, freed: int = 0) -> int:
        """How many jobs to claim now: the free slots (counting *freed* ones), at most a batch."""
        free = self.config.concurrency - len(self._inflight) + freed
        return min(free, self.config.batch or free)

    def _statement(self, size: int, after: Sequence[tuple[int, UUID]] | None = None) -> Statement:
        return jobs.claim_statement(
            self.name,
            queues=self.config.queues,
            kinds=self.kinds,
            batch=size,
            lease_seconds=self.config.lease_seconds,
            executor=self.config.executor,
            after=after,
        )

    async def _claim(self, size: int) -> int:
        """Claim up to *size* jobs and start them (under ``claiming``); how many came."""
        sent = time.monotonic()  # the leases began after this instant
        answer = await acall(self._connection(), *self._statement(size))
        return self._take(answer, sent)

    def _take(self, answer: JsonObject, sent: float) -> int:
        claimed = jobs.parse_claim(answer)
        self.limit_wait = jobs.limit_wait(answer)
        self.stats.claimed += len(claimed)
        for job in claimed:
            self._start(job, _lease(job, sent))
        if claimed:
            self._wake_keeper(min(job.lease_seconds or 3.0 for job in claimed))
        return len(claimed)

    async def complete_then_claim(self, pairs: Sequence[tuple[int, UUID]]) -> JsonObject:
        """The completer's batch; claims the slots it frees in the same call (one round trip).

        Only when the claim loop would claim them at once: not while it is claiming itself, not
        once stopping. A claim that fails (not the connection) falls back to completing alone;
        the claim loop meets the claim's trouble on its own next call.
        """
        size = 0 if self._stopping.is_set() or self.claiming.locked() else self.size(len(pairs))
        if size <= 0:
            return await self._call(jobs.complete_many_statement(pairs))
        async with self.claiming:
            sent = time.monotonic()
            try:
                answer = await self._call(self._statement(size, after=pairs))
            except (psycopg.OperationalError, Refused):
                raise
            except (psycopg.Error, ConveyorError):
                return await self._call(jobs.complete_many_statement(pairs))
            completion, claim = jobs.split_answer(answer)
            with contextlib.suppress(Refused):  # the completion answers the same refusal
                self._take(answer_or_raise(claim), sent)
        return answer_or_raise(completion)

    def _wake_keeper(self, shortest: float) -> None:
        """Have the lease thread look at new leases now, if its next round could be too late.

        The keeper renews a lease once half of it is left and looks every sixth of the shortest
        lease it knows: new leases no shorter than that are seen in time without a wake-up. Waking
        it after every claim cost a thread switch per batch (the GIL handed to and fro on a busy
        machine: ~2 ms a claim, bench/results/perf2-*.md).
        """
        if self.keeper is not None and shortest / 6 < self.keeper.interval:
            self.keeper.wake()

    async def wait(self, seconds: float) -> None:
        """Sleep until *seconds* pass, a wake-up arrives, or the worker stops."""
        self.wakeup.clear()
        waits = [
            asyncio.ensure_future(self.wakeup.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def wake(self) -> None:
        """Make the claim loop look for work now (thread-safe; used by the NOTIFY bridge)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wakeup.set)


def _lease(job: ClaimedJob, sent: float) -> Lease:
    """The job's lease in local time, counted from *sent* (before the claim: never later)."""
    seconds = job.lease_seconds or 3.0  # an answer without claimed_at: assume the shortest
    return Lease(job.job_id, job.lease_token, seconds, sent + seconds)
