"""The lease keeper bounds its own statements per transaction: a session setting would stay on a
transaction pooler's server connection and reach other clients (issue 19)."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from conveyor import jobs
from conveyor.lease import Lease, LeaseKeeper


def test_a_renewal_bounds_its_statements_without_leaving_a_session_setting(
    sql: psycopg.Connection[Any], queue: str, worker_dsn: str
) -> None:
    default = sql.execute("SHOW statement_timeout").fetchone()
    jobs.enqueue(sql, "test.noop", {}, queue=queue)
    [job] = jobs.claim(sql, "keeper-test", queues=[queue], batch=1, lease_seconds=3)
    before = sql.execute(
        "SELECT lease_expires_at FROM job_queue WHERE id = %s", (job.job_id,)
    ).fetchone()
    events: list[tuple[int, str]] = []
    lease = Lease(job.job_id, job.lease_token, 3.0, time.monotonic() + 1.0)  # due for renewal
    keeper = LeaseKeeper(
        worker_dsn, "keeper-test", 3, lambda: [lease], lambda i, e: events.append((i, e))
    )
    try:
        time.sleep(0.05)  # the renewal must move the expiry, not rewrite the same instant
        keeper.tick()
        conn = keeper._connection()
        assert conn is not None
        assert conn.execute("SHOW statement_timeout").fetchone() == default
        assert (
            conn.execute("SHOW lock_timeout").fetchone()
            == sql.execute("SHOW lock_timeout").fetchone()
        )
    finally:
        if keeper._conn is not None:  # ticked by hand: no thread to stop
            keeper._conn.close()
    after = sql.execute(
        "SELECT lease_expires_at FROM job_queue WHERE id = %s", (job.job_id,)
    ).fetchone()
    assert events == []
    assert before is not None and after is not None and after[0] > before[0]
