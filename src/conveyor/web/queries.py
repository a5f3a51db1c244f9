"""Reads the overview, the queues page and /metrics share: figures per queue, jobs per state.

Counts that would scan a big table are estimated from the planner's statistics; the ones that a
partial index answers (queued, in progress, open dead letters) are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

QUEUES_SQL: LiteralString = """
    WITH paused AS (
        SELECT p.queue
          FROM jsonb_array_elements_text(coalesce(
                   (SELECT dc.value FROM conveyor.dot_config AS dc
                     WHERE dc.key = 'queue.paused_queues'), '[]')) AS p(queue)
    ), queued AS (
        SELECT jq.queue,
               count(*) FILTER (WHERE jq.run_at <= now()) AS ready,
               count(*) FILTER (WHERE jq.run_at > now()) AS scheduled,
               extract(epoch FROM now() - min(jq.run_at) FILTER (WHERE jq.run_at <= now()))
                   AS oldest_ready_seconds
          FROM conveyor.job_queue AS jq
         WHERE jq.status = 'queued'
         GROUP BY jq.queue
    ), running AS (
        SELECT jq.queue, count(*) AS in_progress
          FROM conveyor.job_queue AS jq
         WHERE jq.status = 'in_progress'
         GROUP BY jq.queue
    ), dead AS (
        SELECT dl.queue, count(*) AS dead_letters
          FROM conveyor.job_dead_letter AS dl
         WHERE dl.resolved_at IS NULL
         GROUP BY dl.queue
    ), names AS (
        SELECT q.queue FROM queued AS q UNION SELECT r.queue FROM running AS r
        UNION SELECT d.queue FROM dead AS d UNION SELECT p.queue FROM paused AS p
    )
    SELECT n.queue, coalesce(q.ready, 0), coalesce(q.scheduled, 0), q.oldest_ready_seconds,
           coalesce(r.in_progress, 0), coalesce(d.dead_letters, 0), p.queue IS NOT NULL
      FROM names AS n
      LEFT JOIN queued AS q ON q.queue = n.queue
      LEFT JOIN running AS r ON r.queue = n.queue
      LEFT JOIN dead AS d ON d.queue = n.queue
      LEFT JOIN paused AS p ON p.queue = n.queue
     ORDER BY n.queue
"""

# Below this size an exact count is cheap; above it the statistics answer.
_EXACT_BELOW_BYTES = 8 * 1024 * 1024
SIZE_SQL: LiteralString = "SELECT pg_relation_size('conveyor.job_queue')"
STATES_EXACT_SQL: LiteralString = """
    SELECT jq.status, count(*) FROM conveyor.job_queue AS jq GROUP BY jq.status
"""
STATES_ESTIMATED_SQL: LiteralString = """
    SELECT v.status, round(v.freq * greatest(c.reltuples, 0))::bigint
      FROM pg_class AS c
      JOIN pg_stats AS s ON s.schemaname = 'conveyor' AND s.tablename = 'job_queue'
                        AND s.attname = 'status'
     CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs)
           AS v(status, freq)
     WHERE c.oid = 'conveyor.job_queue'::regclass
"""
STATES = ("waiting", "queued", "in_progress", "succeeded", "cancelled")


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One queue: ready and scheduled backlog, running jobs, open dead letters, paused."""

    queue: str
    ready: int
    scheduled: int
    oldest_ready_seconds: float | None
    in_progress: int
    dead_letters: int
    paused: bool

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> QueueFigures:
        oldest = None if row[3] is None else float(row[3])
        return cls(
            str(row[0]), int(row[1]), int(row[2]), oldest, int(row[4]), int(row[5]), bool(row[6])
        )


@dataclass(frozen=True, slots=True)
class StateCounts:
    """Jobs per state; *estimated* when they come from the planner's statistics."""

    counts: dict[str, int]
    estimated: bool


def queues(conn: psycopg.Connection[Any]) -> list[QueueFigures]:
    """Every queue with jobs, dead letters or a pause, by name."""
    return [QueueFigures.from_row(tuple(row)) for row in conn.execute(QUEUES_SQL).fetchall()]


def states(conn: psycopg.Connection[Any]) -> StateCounts:
    """Jobs per state: exact on a small table, estimated (pg_stats) on a big one."""
    size_row = conn.execute(SIZE_SQL).fetchone()
    exact = size_row is None or int(size_row[0]) < _EXACT_BELOW_BYTES
    rows = conn.execute(STATES_EXACT_SQL if exact else STATES_ESTIMATED_SQL).fetchall()
    if not exact and not rows:  # never analyzed: no statistics yet, so count after all
        rows, exact = conn.execute(STATES_EXACT_SQL).fetchall(), True
    counts = dict.fromkeys(STATES, 0)
    counts.update({str(status): int(count) for status, count in rows})
    return StateCounts(counts=counts, estimated=not exact)
