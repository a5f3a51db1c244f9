"""One tick round: the maintenance functions the orchestrator owns, each in its own transaction.

Every step is an idempotent SQL function (safe from several processes at once), so a round run
by `conveyor tick` from host cron and one run by a leading orchestrator end in the same state.
Steps whose phase is not applied are skipped; a refusal (a flag switched off) is reported, not
raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from conveyor.calls import call
from conveyor.errors import Refused

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    """One maintenance function: its SQL, the phase that provides it, and how to repeat it."""

    name: str
    sql: LiteralString
    phase: int
    repeat_while_more: bool = False  # call again while the answer says "more": true


# Batches are the functions' defaults (the SQL owns them); a step whose backlog can outgrow one
# batch repeats while its answer says "more", up to _MAX_REPEATS calls a round.
STEPS: tuple[Step, ...] = (
    Step("lease_reaper", "SELECT conveyor.fn_job_lease_reaper()", 2, True),
    Step("heartbeat_stale_check", "SELECT conveyor.fn_heartbeat_stale_check()", 3),
    Step("watchdog", "SELECT conveyor.fn_watchdog_receive()", 3, True),
    Step("red_zones", "SELECT conveyor.fn_red_zones_receive()", 3, True),
    Step("dispatch", "SELECT conveyor.fn_consumer_dispatch()", 4, True),
    Step("outbound", "SELECT conveyor.fn_iu_outbound_tick(name => 'iu_outbound_default')", 0),
    Step("retention", "SELECT conveyor.fn_job_prune()", 2, True),
    Step("periodic", "SELECT conveyor.fn_periodic_enqueue_due()", 3),
    Step("workflow_refresh", "SELECT conveyor.fn_job_workflow_refresh()", 6),
)

_MAX_REPEATS = 20  # bound one round's work; the next tick continues

APPLIED_SQL: LiteralString = """
    SELECT coalesce(array_agg(ps.phase), '{}')
      FROM conveyor_meta.phase_state AS ps
     WHERE ps.state = 'applied'
"""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did: its answers merged, or why it did not run."""

    step: str
    status: str  # ok | refused | skipped | error
    detail: str
    seconds: float


def _summary(answers: list[dict[str, Any]]) -> str:
    """A short text of the counters in the answers (no payloads: answers carry ids and counts)."""
    totals: dict[str, Any] = {}
    for answer in answers:
        for key, value in answer.items():
            if key in {"ok", "more", "events"}:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
            elif isinstance(value, list):
                totals[key] = totals.get(key, 0) + len(value)
            elif isinstance(value, dict):
                for sub, n in value.items():
                    if isinstance(n, int):
                        totals[f"{key}.{sub}"] = totals.get(f"{key}.{sub}", 0) + n
    return ", ".join(f"{k}={v}" for k, v in totals.items()) or "nothing to do"


def run(
    conn: psycopg.Connection[Any],
    applied: set[int] | None = None,
    still_leader: Callable[[], bool] | None = None,
) -> list[StepResult]:
    """Run one round on *conn* (autocommit); each step commits on its own.

    *still_leader* is asked before each step; the round stops as soon as it answers False, so a
    deposed orchestrator stops acting within one step.
    """
    if applied is None:
        row = conn.execute(APPLIED_SQL).fetchone()
        applied = set(row[0]) if row else set()
    results: list[StepResult] = []
    for step in STEPS:
        if step.phase not in applied:
            results.append(StepResult(step.name, "skipped", f"phase {step.phase} not applied", 0.0))
            continue
        if still_leader is not None and not still_leader():
            log.warning("leadership lost: stopping the tick round before %s", step.name)
            break
        t0 = time.monotonic()
        answers: list[dict[str, Any]] = []
        try:
            for _ in range(_MAX_REPEATS):
                answers.append(call(conn, step.sql))
                if not (step.repeat_while_more and answers[-1].get("more")):
                    break
            results.append(StepResult(step.name, "ok", _summary(answers), time.monotonic() - t0))
        except Refused as refusal:
            results.append(StepResult(step.name, "refused", refusal.reason, time.monotonic() - t0))
        except psycopg.Error as error:
            log.warning("tick step %s failed: %s", step.name, error)
            results.append(
                StepResult(
                    step.name, "error", str(error).strip().splitlines()[0], time.monotonic() - t0
                )
            )
            if conn.broken:
                break
    return results
