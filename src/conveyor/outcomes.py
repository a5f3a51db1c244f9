"""Outcomes: what became of each attempt the worker ran, recorded with its lease token and counted.

Each outcome is one ``fn_job_*`` statement (see jobs.py); the SQL decides what follows (a retry
time, the dead letter, a fenced-off stale token). A failed attempt is logged at WARNING with its
error and what happens next, never with its payload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conveyor import jobs
from conveyor.calls import Statement
from conveyor.completer import Completer
from conveyor.jobs import ClaimedJob
from conveyor.types import JsonObject

log = logging.getLogger("conveyor.worker")

Run = Callable[[Statement], Awaitable[JsonObject]]


@dataclass(slots=True)
class WorkerStats:
    """Counters for the periodic summary line and for callers of `Worker.run`."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    snoozed: int = 0
    cancelled: int = 0
    lease_lost: int = 0
    released: int = 0
    completion_errors: int = 0  # completion batches the database rejected unexpectedly

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
                ("completion errors", self.completion_errors),
            )
            if count
        ]
        return f"{self.claimed} claimed" + (f": {', '.join(outcomes)}" if outcomes else "")


class Outcomes:
    """Records outcomes through *run* (one statement on the worker's connection) into *stats*."""

    def __init__(self, run: Run, stats: WorkerStats) -> None:
        self._run = run
        self.stats = stats
        self.completer = Completer(run, self._completion_error)

    async def succeeded(self, job: ClaimedJob, result: Any, *, recorded: bool = False) -> None:
        """Complete *job* (*recorded*: a transactional handler already did, with its effects).

        A job without a result is completed with the completer's next batch.
        """
        if not recorded and result is not None:
            await self._run(jobs.complete_statement(job.job_id, job.lease_token, result))
        elif not recorded:
            try:
                completed = await self.completer.complete(job)
            except Exception as error:  # the database rejected this completion (logged, counted)
                log.error(
                    "job %s: could not be completed (%s: %s); its lease will expire and the "
                    "reaper will hand it out again",
                    job.job_id,
                    type(error).__name__,
                    error,
                )
                return
            if not completed:
                self.lease_lost(job, "lease lost; result discarded")
                return
        self.stats.succeeded += 1

    async def failed(self, job: ClaimedJob, error: str, retry_in: float | None = None) -> None:
        """A retryable failure: the SQL re-queues it (after backoff) or dead-letters it."""
        answer = await self._run(
            jobs.fail_transient_statement(job.job_id, job.lease_token, error, retry_in)
        )
        if answer.get("status") == "dead_letter":
            self.stats.dead_lettered += 1
            _log_failure(job, error, "dead-lettered (attempts exhausted)")
            return
        self.stats.retried += 1
        if answer.get("status") == "queued":
            _log_failure(job, error, f"will retry at {answer.get('run_at')}")

    async def dead_letter(self, job: ClaimedJob, error: str) -> None:
        """A permanent failure: straight to the dead letter queue."""
        await self._run(jobs.fail_permanent_statement(job.job_id, job.lease_token, error))
        self.stats.dead_lettered += 1
        _log_failure(job, error, "dead-lettered (permanent failure)")

    async def snoozed(self, job: ClaimedJob, seconds: float) -> None:
        await self._run(jobs.snooze_statement(job.job_id, job.lease_token, seconds))
        self.stats.snoozed += 1

    async def cancelled(self, job: ClaimedJob) -> None:
        """The handler stopped after a cancel request: the job ends cancelled."""
        await self._run(jobs.cancel_ack_statement(job.job_id, job.lease_token))
        self.stats.cancelled += 1

    async def released(self, job: ClaimedJob) -> None:
        """Shutdown: give the job back without spending the attempt."""
        answer = await self._run(jobs.release_statement(job.job_id, job.lease_token))
        if not self._past_max_releases(job, answer):
            self.stats.released += 1

    def _past_max_releases(self, job: ClaimedJob, answer: JsonObject) -> bool:
        """True if the SQL dead-lettered the job instead (released too often)."""
        if answer.get("status") != "dead_letter":
            return False
        self.stats.dead_lettered += 1
        log.warning(
            "job %s (%s) was released too often; dead-lettered (%s)",
            job.job_id,
            job.kind,
            answer.get("reason"),
        )
        return True

    def _completion_error(self) -> None:
        self.stats.completion_errors += 1

    def lease_lost(self, job: ClaimedJob, what: str) -> None:
        """The database fenced this attempt off; nothing to record."""
        self.stats.lease_lost += 1
        log.warning("job %s: %s", job.job_id, what)


def error_text(error: BaseException) -> str:
    """How a handler's exception is stored (fn_job_fail_* cap its length)."""
    return f"{type(error).__name__}: {error}"


def _log_failure(job: ClaimedJob, error: str, outcome: str) -> None:
    log.warning(
        "job %s (%s) failed on attempt %s of %s: %s; %s",
        job.job_id,
        job.kind,
        job.attempts,
        job.max_attempts,
        error,
        outcome,
    )
