"""Handlers of the workflow process tests (`conveyor worker --app workflowapp:registry`)."""

from __future__ import annotations

import time
from typing import Any

from conveyor.handlers import JobContext, Registry

registry = Registry()


@registry.handler("wf.echo", transactional=True)
def echo(job: JobContext) -> dict[str, Any]:
    """Answers the results its parents handed down (read through fn_job_workflow_parents)."""
    parents = job.parents()
    return {
        "job": job.job.job_id,
        "parents": {key: parent.result for key, parent in sorted(parents.items())},
    }


@registry.handler("wf.marker")
def marker(job: JobContext) -> dict[str, Any]:
    """Notes each attempt in a file; the first attempt then works until stopped (kill tests)."""
    with open(job.payload["marker"], "a") as out:
        out.write(f"{job.job.job_id} {job.job.attempts} {job.worker}\n")
    if job.job.attempts == 1:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not job.cancelled:
            time.sleep(0.05)
    return {"attempt": job.job.attempts}


@registry.handler("wf.cooperative")
async def cooperative(job: JobContext) -> None:
    """Runs until cancelled."""
    import asyncio

    while True:
        job.raise_if_cancelled()
        await asyncio.sleep(0.05)
