"""The worker's one-round-trip statement (jobs.claim_statement with `after`): fn_job_complete_many
for the finished jobs, then fn_job_claim for the slots they free, in one statement and one
transaction. Plain SQL answers on real PostgreSQL, inside the test's rolled-back transaction."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg

from conveyor import jobs as api
from conveyor.calls import call
from helpers import scalar, unique

Conn = psycopg.Connection[Any]


def _claim(conn: Conn, queue: str, batch: int, after: list[Any] | None = None) -> Any:
    return call(conn, *api.claim_statement("w1", queues=[queue], batch=batch, after=after))


def _status(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT status FROM job_queue WHERE id = %s", (job_id,)))


def test_a_claim_after_completions_completes_them_first_then_claims_the_next(jobs: Conn) -> None:
    queue = unique("q")
    ids = api.enqueue_many(jobs, [{"kind": "demo.echo", "queue": queue} for _ in range(3)])
    first = api.parse_claim(_claim(jobs, queue, 2))

    completion, claim = api.split_answer(
        _claim(jobs, queue, 2, after=[(j.job_id, j.lease_token) for j in first])
    )

    assert completion == {"ok": True, "completed": ids[:2], "lease_lost": []}
    assert [j.job_id for j in api.parse_claim(claim)] == [ids[2]]
    assert [_status(jobs, i) for i in ids] == ["succeeded", "succeeded", "in_progress"]


def test_a_stale_token_among_the_completions_is_lease_lost_and_the_claim_still_runs(
    jobs: Conn,
) -> None:
    queue = unique("q")
    ids = api.enqueue_many(jobs, [{"kind": "demo.echo", "queue": queue} for _ in range(2)])
    (held,) = api.parse_claim(_claim(jobs, queue, 1))

    completion, claim = api.split_answer(_claim(jobs, queue, 1, after=[(held.job_id, uuid4())]))

    assert completion == {"ok": True, "completed": [], "lease_lost": [held.job_id]}
    assert [j.job_id for j in api.parse_claim(claim)] == [ids[1]]
    assert _status(jobs, held.job_id) == "in_progress"
