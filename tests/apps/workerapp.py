"""Handlers used by the worker process tests (imported by `conveyor worker --app`)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from conveyor.handlers import Fail, JobContext, Registry, Snooze

registry = Registry()


@registry.handler("test.noop")
async def noop(job: JobContext) -> None:
    return None


@registry.handler("test.effect", transactional=True)
def effect(job: JobContext) -> None:
    """Writes its effect row in the same transaction as the completion (exactly once)."""
    job.conn.execute(
        "INSERT INTO public.test_effect (job_id, seq) VALUES (%s, %s)",
        (job.job.job_id, job.payload.get("seq")),
    )
    delay = float(job.payload.get("sleep", 0))
    if delay:
        time.sleep(delay)


@registry.handler("test.sleep")
async def sleep(job: JobContext) -> dict[str, Any]:
    await asyncio.sleep(float(job.payload.get("seconds", 1)))
    return {"slept": job.payload.get("seconds", 1)}


@registry.handler("test.marker")
def marker(job: JobContext) -> None:
    """Writes a marker file, then works for a long time (for kill tests)."""
    path = job.payload["marker"]
    with open(path, "a") as out:
        out.write(f"{job.job.job_id} {job.job.attempts} {job.worker}\n")
    deadline = time.monotonic() + float(job.payload.get("seconds", 60))
    while time.monotonic() < deadline and not job.cancelled:
        time.sleep(0.05)


@registry.handler("test.wait_release")
def wait_release(job: JobContext) -> None:
    """Writes a marker file, then works until the test creates the release file (or the job is
    cancelled): the test, not the clock, decides when the attempt may finish."""
    with open(job.payload["marker"], "a") as out:
        out.write(f"{job.job.job_id} {job.job.attempts} {job.worker}\n")
    release = job.payload["release"]
    deadline = time.monotonic() + 120  # a failure guard only: a test that forgets still ends
    while not os.path.exists(release) and not job.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)


@registry.handler("test.block_loop")
async def block_loop(job: JobContext) -> None:
    """Blocks the event loop (a badly written async handler)."""
    time.sleep(float(job.payload.get("seconds", 5)))


@registry.handler("test.fail")
def fail(job: JobContext) -> None:
    raise RuntimeError("this handler always fails")


@registry.handler("test.fail_permanent")
def fail_permanent(job: JobContext) -> None:
    raise Fail("cannot ever work")


@registry.handler("test.snooze_once")
def snooze_once(job: JobContext) -> None:
    """Snoozes on its first run (remembered in a marker file), succeeds on the next."""
    marker = job.payload["marker"]
    if not os.path.exists(marker):
        with open(marker, "w") as out:
            out.write(str(job.job.attempts))
        raise Snooze(0.2)


@registry.handler("test.suicide")
def suicide(job: JobContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@registry.handler("test.cooperative")
async def cooperative(job: JobContext) -> None:
    """Runs until cancelled (checks the signal and sleeps)."""
    while True:
        job.raise_if_cancelled()
        await asyncio.sleep(0.05)
