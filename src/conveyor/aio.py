"""The asyncio client: every `conveyor.jobs` client call as a coroutine on an AsyncConnection.

Each coroutine runs the same `jobs.*_statement` description as its sync twin through
`calls.acall`, so the SQL, the arguments and the answer handling (refusals → `Refused`,
SQLSTATEs → conveyor's exceptions) are written once. ``None`` means "the database default".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from conveyor import db, tracing
from conveyor import jobs as sync_jobs
from conveyor.calls import acall
from conveyor.jobs import ClaimedJob
from conveyor.settings import Settings
from conveyor.types import JsonObject

AsyncConn = psycopg.AsyncConnection[Any]


async def aconnect(
    url: str | None = None,
    *,
    autocommit: bool = False,
    application_name: str = "conveyor",
    settings: Settings | None = None,
) -> AsyncConn:
    """Open an AsyncConnection to conveyor's database; the asyncio twin of `conveyor.connect`.

    *url* None means "from the settings" (CONVEYOR_DATABASE_URL, DATABASE_URL, else the embedded
    server, started in a thread). Raises ConfigError with the redacted URL when it is unreachable.
    """
    settings = settings or Settings.from_env()
    target, source = await asyncio.to_thread(db.target, url, settings)
    try:
        conn = await psycopg.AsyncConnection.connect(
            target, autocommit=True, application_name=application_name, connect_timeout=10
        )
        await db.fit_to_pooler_async(conn)
        await conn.set_autocommit(autocommit)
        return conn
    except (psycopg.ProgrammingError, psycopg.OperationalError) as error:
        raise db.connect_error(error, target, source) from error


@tracing.traced_aenqueue
async def enqueue(
    conn: AsyncConn,
    kind: str,
    payload: JsonObject | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    concurrency_key: str | None = None,
) -> int:
    """Enqueue one job inside the caller's transaction; return its id (see `jobs.enqueue`)."""
    statement = sync_jobs.enqueue_statement(
        kind,
        payload,
        queue=queue,
        priority=priority,
        run_at=run_at,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        concurrency_key=concurrency_key,
    )
    return int((await acall(conn, *statement))["job_id"])


@tracing.traced_aenqueue_many
async def enqueue_many(conn: AsyncConn, jobs: Iterable[JsonObject]) -> list[int]:
    """Enqueue many jobs in one call; return their ids in order (see `jobs.enqueue_many`)."""
    statement = sync_jobs.enqueue_many_statement(jobs)
    if statement is None:
        return []
    return sync_jobs.parse_enqueue_many(await acall(conn, *statement))


async def claim(
    conn: AsyncConn,
    worker: str,
    *,
    queues: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    batch: int | None = None,
    lease_seconds: int | None = None,
    executor: str | None = None,
) -> list[ClaimedJob]:
    """Claim up to *batch* ready jobs (see `jobs.claim`)."""
    statement = sync_jobs.claim_statement(
        worker,
        queues=queues,
        kinds=kinds,
        batch=batch,
        lease_seconds=lease_seconds,
        executor=executor,
    )
    return sync_jobs.parse_claim(await acall(conn, *statement))


async def complete(
    conn: AsyncConn, job_id: int, lease_token: UUID, result: JsonObject | None = None
) -> None:
    """Mark the job succeeded; raises LeaseLost on a stale token (see `jobs.complete`)."""
    await acall(conn, *sync_jobs.complete_statement(job_id, lease_token, result))


async def complete_many(
    conn: AsyncConn, jobs: Sequence[tuple[int, UUID]]
) -> tuple[list[int], list[int]]:
    """Complete several jobs in one call; return (completed ids, lease-lost ids)."""
    return sync_jobs.parse_complete_many(
        await acall(conn, *sync_jobs.complete_many_statement(jobs))
    )


async def fail_transient(
    conn: AsyncConn,
    job_id: int,
    lease_token: UUID,
    error: str | None = None,
    *,
    retry_in_seconds: float | None = None,
) -> JsonObject:
    """Report a retryable failure (see `jobs.fail_transient`)."""
    return await acall(
        conn, *sync_jobs.fail_transient_statement(job_id, lease_token, error, retry_in_seconds)
    )


async def fail_permanent(
    conn: AsyncConn, job_id: int, lease_token: UUID, error: str | None = None
) -> JsonObject:
    """Send the job to the dead letter queue (see `jobs.fail_permanent`)."""
    return await acall(conn, *sync_jobs.fail_permanent_statement(job_id, lease_token, error))


async def extend_lease(
    conn: AsyncConn, job_id: int, lease_token: UUID, lease_seconds: int | None = None
) -> JsonObject:
    """Extend the lease; the answer carries ``cancel_requested`` (see `jobs.extend_lease`)."""
    return await acall(conn, *sync_jobs.extend_lease_statement(job_id, lease_token, lease_seconds))


async def snooze(conn: AsyncConn, job_id: int, lease_token: UUID, seconds: float) -> JsonObject:
    """Put the job back for *seconds* without spending an attempt (see `jobs.snooze`)."""
    return await acall(conn, *sync_jobs.snooze_statement(job_id, lease_token, seconds))


async def release(conn: AsyncConn, job_id: int, lease_token: UUID) -> JsonObject:
    """Give the job back now without spending an attempt (see `jobs.release`)."""
    return await acall(conn, *sync_jobs.release_statement(job_id, lease_token))


async def cancel(conn: AsyncConn, job_id: int, reason: str | None = None) -> JsonObject:
    """Cancel a queued job, or ask a running one to stop (see `jobs.cancel`)."""
    return await acall(conn, *sync_jobs.cancel_statement(job_id, reason))


async def cancel_ack(conn: AsyncConn, job_id: int, lease_token: UUID) -> JsonObject:
    """End a cancel-requested running job as cancelled (see `jobs.cancel_ack`)."""
    return await acall(conn, *sync_jobs.cancel_ack_statement(job_id, lease_token))
