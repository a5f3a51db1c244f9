"""The jobs a worker is running: shared by its event loop, which adds and removes them, and its
lease thread, which reads their leases and flags the ones lost or cancelled (under one lock)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from conveyor.handlers import JobContext
from conveyor.jobs import ClaimedJob
from conveyor.lease import Lease


@dataclass(slots=True)
class RunningJob:
    """One claimed job while its handler runs."""

    job: ClaimedJob
    context: JobContext
    lease: Lease
    task: asyncio.Task[None] | None = None  # running the handler, then recording its outcome
    in_handler: bool = False  # the task is inside the handler: what a lost lease cancels
    lease_lost: bool = False
    cancel_requested: bool = False


class Inflight:
    """The running jobs by id."""

    def __init__(self) -> None:
        self._jobs: dict[int, RunningJob] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, entry: RunningJob) -> None:
        with self._lock:
            self._jobs[entry.job.job_id] = entry

    def remove(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def leases(self) -> list[Lease]:
        """The leases still to keep (not those already lost); called from the lease thread."""
        with self._lock:
            return [e.lease for e in self._jobs.values() if not e.lease_lost]

    def flag(self, job_id: int, event: str) -> RunningJob | None:
        """Mark a running job 'lost' or 'cancel' and signal its handler; None if it is done."""
        with self._lock:
            entry = self._jobs.get(job_id)
        if entry is None:
            return None
        if event == "lost":
            entry.lease_lost = True
        else:
            entry.cancel_requested = True
        entry.context._cancel()
        return entry

    def tasks(self) -> list[asyncio.Task[None]]:
        with self._lock:
            return [e.task for e in self._jobs.values() if e.task is not None]
