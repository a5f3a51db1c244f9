"""Registries for the pilot's fault tests, built from conveyor.pilot's own handlers.

blocking: the pilot, except that staging.cut, after its step has written the target and cut the
record (not yet committed), waits for the advisory lock HOLD_KEY, which the test holds: the test
then knows the worker is inside the cut and kills it there.
cut_only: only staging.cut, so a test can look at (and tamper with) a record between its steps.
"""

from __future__ import annotations

from typing import Any

from conveyor import pilot
from conveyor.handlers import JobContext, Registry

HOLD_KEY = 5_105_105


def _blocking_cut(context: JobContext) -> Any:
    result = pilot.cut(context)
    context.conn.execute("SELECT pg_advisory_xact_lock(%s)", (HOLD_KEY,))
    return result


blocking = Registry()
blocking.handler("staging.cut", transactional=True)(_blocking_cut)
blocking.handler("staging.verify_cut", transactional=True)(pilot.verify_cut)
blocking.handler("staging.cleanup", transactional=True)(pilot.cleanup)

cut_only = Registry()
cut_only.handler("staging.cut", transactional=True)(pilot.cut)
