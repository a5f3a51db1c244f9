"""The completer: the worker's jobs that succeeded without a result are completed together, in one
``fn_job_complete_many`` call per batch, instead of one round trip each (River keeps a separate
completer for the same reason). Whatever piles up while a call is in flight goes in the next.
A batch the database rejects for any other reason than a lost connection is completed job by
job, so one bad job cannot stall the rest and no handler waits on a flusher that died.
The worker may take over sending a batch (`send`): it then claims the slots the batch frees in
the same round trip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import psycopg

from conveyor import jobs
from conveyor.calls import Statement
from conveyor.errors import LeaseLost, Refused
from conveyor.jobs import ClaimedJob
from conveyor.types import JsonObject

log = logging.getLogger(__name__)

Run = Callable[[Statement], Awaitable[JsonObject]]
# Completes these (job id, lease token) pairs; answers as fn_job_complete_many.
Send = Callable[[Sequence[tuple[int, UUID]]], Awaitable[JsonObject]]


@dataclass(slots=True)
class _Completion:
    job: ClaimedJob
    done: asyncio.Future[bool] = field(  # True: completed; False: its lease was lost
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Completer:
    """Batches completions; *run* executes one statement on the worker's connection.

    *on_error* is called once per batch the database rejected unexpectedly (for the counters).
    """

    def __init__(self, run: Run, on_error: Callable[[], None] = lambda: None) -> None:
        self._run = run
        self._on_error = on_error
        self._pending: list[_Completion] = []
        self._needed = asyncio.Event()
        self.errors = 0  # batches the database rejected with an unexpected error
        self.send: Send | None = None  # None: one plain fn_job_complete_many call per batch

    async def complete(self, job: ClaimedJob) -> bool:
        """Complete *job* with the next batch; False when its lease was lost meanwhile."""
        completion = _Completion(job)
        self._pending.append(completion)
        self._needed.set()
        return await completion.done

    async def run(self) -> None:
        """Flush whenever completions wait (until cancelled)."""
        while True:
            await self._needed.wait()
            await self.flush()

    async def flush(self) -> None:
        """Complete every pending job in one fn_job_complete_many call (retried until it lands)."""
        backoff = 0.2
        while self._pending:
            self._needed.clear()
            batch, self._pending = self._pending, []
            try:
                answer = await self._send([(c.job.job_id, c.job.lease_token) for c in batch])
            except (psycopg.OperationalError, Refused) as error:
                self._pending = batch + self._pending
                log.warning(
                    "completing %s jobs failed (%s); retrying in %.1f s",
                    len(batch),
                    type(error).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as error:  # anything else must not end the flusher: see _one_by_one
                self.errors += 1
                self._on_error()
                log.error(
                    "completing %s jobs failed unexpectedly (%s: %s; error %s of this worker); "
                    "completing them one by one",
                    len(batch),
                    type(error).__name__,
                    error,
                    self.errors,
                )
                await self._one_by_one(batch)
                continue
            completed = set(jobs.parse_complete_many(answer)[0])
            for completion in batch:
                if not completion.done.done():  # its waiter may have been cancelled (a drain)
                    completion.done.set_result(completion.job.job_id in completed)
        self._needed.clear()

    async def _one_by_one(self, batch: list[_Completion]) -> None:
        """Complete each job of a rejected batch alone; a job that fails again gets the error.

        Its handler's caller then logs that the outcome could not be recorded and drops the job,
        whose lease expires, so the reaper hands it out again: at least once, never stuck.
        """
        for completion in batch:
            if completion.done.done():  # its waiter was cancelled (a drain): nothing to tell
                continue
            job = completion.job
            try:
                await self._run(jobs.complete_statement(job.job_id, job.lease_token))
            except LeaseLost:  # someone else owns the job now
                completion.done.set_result(False)
            except Exception as error:
                completion.done.set_exception(error)
            else:
                completion.done.set_result(True)

    async def _send(self, pairs: Sequence[tuple[int, UUID]]) -> JsonObject:
        if self.send is not None:
            return await self.send(pairs)
        return await self._run(jobs.complete_many_statement(pairs))
