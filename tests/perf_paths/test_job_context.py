"""The per-job Python path stays lean: a JobContext carries a plain cancellation flag (a
threading.Event cost ~11 µs a job, bench/results/perf3-20261203.md) and still cancels."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from conveyor.handlers import JobContext
from conveyor.inflight import Inflight, RunningJob
from conveyor.jobs import ClaimedJob
from conveyor.lease import Lease


def claimed(job_id: int = 1) -> ClaimedJob:
    return ClaimedJob(
        job_id=job_id,
        queue="default",
        kind="perf.noop",
        payload={},
        priority=0,
        attempts=1,
        max_attempts=5,
        lease_token=uuid4(),
        lease_expires_at=datetime.now(UTC),
    )


def test_a_context_holds_no_threading_primitive() -> None:
    context = JobContext(job=claimed(), worker="w")

    values = [getattr(context, name) for name in JobContext.__slots__]
    assert not any(isinstance(v, threading.Event) for v in values)
    assert context.cancelled is False


def test_a_lease_event_flags_the_context_and_raise_if_cancelled_raises() -> None:
    inflight = Inflight()
    job = claimed(7)
    context = JobContext(job=job, worker="w")
    inflight.add(RunningJob(job=job, context=context, lease=Lease(7, job.lease_token, 30, 30.0)))

    context.raise_if_cancelled()  # not yet: returns
    entry = inflight.flag(7, "cancel")

    assert entry is not None and entry.cancel_requested
    assert context.cancelled is True
    with pytest.raises(asyncio.CancelledError):
        context.raise_if_cancelled()


def test_a_flag_set_from_another_thread_is_seen_by_the_handler_thread() -> None:
    context = JobContext(job=claimed(), worker="w")
    seen = threading.Event()

    def handler() -> None:
        while not context.cancelled:  # a sync handler polling its context
            threading.Event().wait(0.01)
        seen.set()

    runner = threading.Thread(target=handler, daemon=True)
    runner.start()
    threading.Thread(target=context._cancel).start()

    assert seen.wait(60)
    runner.join(60)
