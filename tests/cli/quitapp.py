"""An --app whose registry imports fine in `conveyor up` but whose worker processes exit at once
(a worker that cannot start), for the supervisor's give-up test. Run from this directory: the
bare module name also proves the current directory is on the import path."""

from __future__ import annotations

import sys

from conveyor.handlers import JobContext, Registry
from conveyor.types import JsonObject

if "worker" in sys.argv:
    raise SystemExit(3)

registry = Registry()


@registry.handler("quit.never")
async def never(job: JobContext) -> JsonObject:
    return {}
