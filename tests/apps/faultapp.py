"""Handlers used by the fault-injection tests (imported by `conveyor worker --app`)."""

from __future__ import annotations

import time

from conveyor.handlers import JobContext, Registry

registry = Registry()


@registry.handler("fault.effect", transactional=True)
def effect(job: JobContext) -> None:
    """Writes its effect row in the completion's transaction, then sleeps (exactly once)."""
    job.conn.execute(
        "INSERT INTO public.fault_effect (job_id, seq) VALUES (%s, %s)",
        (job.job.job_id, job.payload.get("seq")),
    )
    delay = float(job.payload.get("sleep", 0))
    if delay:
        time.sleep(delay)
