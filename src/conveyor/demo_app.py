"""Handlers that `conveyor demo` runs; the smallest example of a `--app` registry."""

from __future__ import annotations

from conveyor.handlers import JobContext, Registry
from conveyor.types import JsonObject

registry = Registry()


@registry.handler("demo.echo", timeout=10)
async def echo(job: JobContext) -> JsonObject:
    """Return the payload: the smallest useful job."""
    return {"echo": job.payload}
