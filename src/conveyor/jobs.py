"""The synchronous client: one wrapper per fn_job_* call, on the caller's connection.

Each call is described once, by a `*_statement` function (its SQL and its arguments), which
the wrapper here and the asyncio worker both run; the rules (gating, fencing, idempotency,
backoff, bounds, the error-length cap) live in the SQL functions. ``None`` always means "the
database default".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from conveyor import tracing
from conveyor.calls import Statement, call
from conveyor.types import JsonObject

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds a lease on."""

    job_id: int
    queue: str
    kind: str
    payload: JsonObject
    priority: int
    attempts: int
    max_attempts: int
    lease_token: UUID
    lease_expires_at: datetime
    lease_seconds: float | None = None  # the lease granted, when the answer carries claimed_at

    @classmethod
    def from_answer(cls, item: JsonObject, claimed_at: datetime | None = None) -> ClaimedJob:
        expires = datetime.fromisoformat(str(item["lease_expires_at"]))
        return cls(
            job_id=int(item["job_id"]),
            queue=str(item["queue"]),
            kind=str(item["kind"]),
            payload=dict(item["payload"]),
            priority=int(item["priority"]),
            attempts=int(item["attempts"]),
            max_attempts=int(item["max_attempts"]),
            lease_token=UUID(str(item["lease_token"])),
            lease_expires_at=expires,
            lease_seconds=(expires - claimed_at).total_seconds() if claimed_at else None,
        )


ENQUEUE_SQL: LiteralString = """
    SELECT conveyor.fn_job_enqueue(
        kind => %s::text,
        payload => %s::jsonb,
        queue => %s::text,
        priority => %s::integer,
        run_at => %s::timestamptz,
        idempotency_key => %s::text,
        max_attempts => %s::integer
    )
"""

# With a concurrency_key (phase 8's fn_job_enqueue): sent only when one is given, so enqueue
# keeps working on a database without phase 8.
ENQUEUE_KEYED_SQL: LiteralString = """
    SELECT conveyor.fn_job_enqueue(
        kind => %s::text,
        payload => %s::jsonb,
        queue => %s::text,
        priority => %s::integer,
        run_at => %s::timestamptz,
        idempotency_key => %s::text,
        max_attempts => %s::integer,
        concurrency_key => %s::text
    )
"""


@tracing.traced_enqueue
def enqueue(
    conn: Conn,
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
    """Enqueue one job on *conn*, inside the caller's transaction; return its id.

    Wraps ``fn_job_enqueue``. With an *idempotency_key* that matches a live job, returns that
    job's id instead. A *concurrency_key* (phase 8) is the key of per-key limits and fairness.
    Raises Disabled while ``queue.job_substrate.enabled`` is false and InvalidInput for a bad
    argument.
    """
    statement = enqueue_statement(
        kind,
        payload,
        queue=queue,
        priority=priority,
        run_at=run_at,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        concurrency_key=concurrency_key,
    )
    return int(call(conn, *statement)["job_id"])


def enqueue_statement(
    kind: str,
    payload: JsonObject | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    concurrency_key: str | None = None,
) -> Statement:
    """``fn_job_enqueue`` with these arguments (shared by the sync and the asyncio client)."""
    arguments = (kind, Jsonb(payload or {}), queue, priority, run_at, idempotency_key, max_attempts)
    if concurrency_key is not None:
        return Statement(ENQUEUE_KEYED_SQL, (*arguments, concurrency_key))
    return Statement(ENQUEUE_SQL, arguments)


ENQUEUE_MANY_SQL: LiteralString = """
    SELECT conveyor.fn_job_enqueue_many(
        jobs => %s::jsonb
    )
"""


@tracing.traced_enqueue_many
def enqueue_many(conn: Conn, jobs: Iterable[JsonObject]) -> list[int]:
    """Enqueue many jobs in one call; each item has enqueue's keyword names. Return ids in order.

    Wraps ``fn_job_enqueue_many``; datetimes in ``run_at`` are sent as ISO strings. Every key is
    passed through as given: ``concurrency_key`` is stored from phase 8 on, and refused by the
    database (InvalidInput) before it.
    """
    statement = enqueue_many_statement(jobs)
    if statement is None:
        return []
    return parse_enqueue_many(call(conn, *statement))


def enqueue_many_statement(jobs: Iterable[JsonObject]) -> Statement | None:
    """``fn_job_enqueue_many`` for *jobs*; None when there are none (nothing to send)."""
    items = [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in job.items()}
        for job in jobs
    ]
    return Statement(ENQUEUE_MANY_SQL, (Jsonb(items),)) if items else None


def parse_enqueue_many(answer: JsonObject) -> list[int]:
    """The job ids of a fn_job_enqueue_many answer, in the order the jobs were given."""
    return [int(i) for i in answer["job_ids"]]


# claimed_at is the claim's transaction time, the instant fn_job_claim computed the leases from
# (now()): lease_expires_at - claimed_at is the lease the database granted, so a worker that
# passes no lease_seconds learns queue.lease.default_seconds from the answer itself.
_CLAIM: LiteralString = """conveyor.fn_job_claim(
        worker => %s::text,
        queues => %s::text[],
        kinds => %s::text[],
        batch => %s::integer,
        lease_seconds => %s::integer"""
# Phase 4: claim only the kinds the executor is subscribed to (job_subscription).
_CLAIM_EXECUTOR: LiteralString = (
    _CLAIM
    + """,
        executor => %s::text"""
)
_CLAIMED_AT: LiteralString = """
    ) || jsonb_build_object('claimed_at', now())"""
# A worker's completions and its next claim in one round trip and one transaction: the CTE is
# materialized before the claim is evaluated, so the jobs are completed first (and the claim,
# running after them, may be handed the slots they free). Two calls of the API, nothing else;
# the arrays in binary, as in COMPLETE_MANY_SQL.
_COMPLETE_THEN: LiteralString = """
    WITH completion AS MATERIALIZED (
        SELECT conveyor.fn_job_complete_many(job_ids => %b::bigint[], lease_tokens => %b::uuid[])
               AS answer
    )
    SELECT jsonb_build_object('complete', c.answer, 'claim', """
_FROM_COMPLETION: LiteralString = """)
      FROM completion AS c"""


def claim_statement(
    worker: str,
    *,
    queues: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    batch: int | None = None,
    lease_seconds: int | None = None,
    executor: str | None = None,
    after: Sequence[tuple[int, UUID]] | None = None,
) -> Statement:
    """``fn_job_claim`` with these arguments (shared by the sync client and the asyncio worker).

    With an *executor* (phase 4), only kinds that executor is subscribed to are claimed. With
    *after* (job id, lease token) pairs, ``fn_job_complete_many`` completes them first in the
    same statement; its answer is then ``{"complete": …, "claim": …}`` (see `split_answer`).
    """
    params: tuple[Any, ...] = (
        worker,
        list(queues) if queues is not None else None,
        list(kinds) if kinds is not None else None,
        batch,
        lease_seconds,
    )
    claim = _CLAIM
    if executor is not None:
        claim, params = _CLAIM_EXECUTOR, (*params, executor)
    if after is None:
        return Statement("SELECT " + claim + _CLAIMED_AT, params)
    pairs = ([j for j, _ in after], [t for _, t in after])
    return Statement(_COMPLETE_THEN + claim + _CLAIMED_AT + _FROM_COMPLETION, (*pairs, *params))


def split_answer(answer: JsonObject) -> tuple[JsonObject, JsonObject]:
    """(fn_job_complete_many's answer, fn_job_claim's answer) of a claim *after* completions."""
    return dict(answer["complete"]), dict(answer["claim"])


def parse_claim(answer: JsonObject) -> list[ClaimedJob]:
    """The jobs of a fn_job_claim answer."""
    raw = answer.get("claimed_at")
    claimed_at = datetime.fromisoformat(str(raw)) if raw is not None else None
    return [ClaimedJob.from_answer(item, claimed_at) for item in answer["jobs"]]


def limit_wait(answer: JsonObject) -> float | None:
    """Seconds until a limited queue's rate lets a claim take jobs again, when the rate held this
    claim back (phase 8's ``limit_wait_seconds``); None otherwise."""
    raw = answer.get("limit_wait_seconds")
    return float(raw) if raw is not None else None


def claim(
    conn: Conn,
    worker: str,
    *,
    queues: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    batch: int | None = None,
    lease_seconds: int | None = None,
    executor: str | None = None,
) -> list[ClaimedJob]:
    """Claim up to *batch* ready jobs (priority, then run_at order). Wraps ``fn_job_claim``.

    *executor* (phase 4) limits the claim to the kinds that executor is subscribed to.
    """
    statement = claim_statement(
        worker,
        queues=queues,
        kinds=kinds,
        batch=batch,
        lease_seconds=lease_seconds,
        executor=executor,
    )
    return parse_claim(call(conn, *statement))


COMPLETE_SQL: LiteralString = """
    SELECT conveyor.fn_job_complete(
        job_id => %s::bigint,
        lease_token => %s::uuid,
        result => %s::jsonb
    )
"""


def complete_statement(job_id: int, lease_token: UUID, result: Any = None) -> Statement:
    """``fn_job_complete``; a *result* that is not an object is stored as ``{"value": result}``."""
    if result is not None and not isinstance(result, dict):
        result = {"value": result}
    return Statement(
        COMPLETE_SQL, (job_id, lease_token, Jsonb(result) if result is not None else None)
    )


def complete(conn: Conn, job_id: int, lease_token: UUID, result: JsonObject | None = None) -> None:
    """Mark the job succeeded. Wraps ``fn_job_complete``; raises LeaseLost on a stale token."""
    call(conn, *complete_statement(job_id, lease_token, result))


# The arrays go in binary (%b): psycopg dumps 100 ids and tokens in ~50 µs that way, against
# ~290 µs as text: ~2.4 µs a job of the worker's completions.
COMPLETE_MANY_SQL: LiteralString = """
    SELECT conveyor.fn_job_complete_many(
        job_ids => %b::bigint[],
        lease_tokens => %b::uuid[]
    )
"""


def complete_many_statement(jobs: Sequence[tuple[int, UUID]]) -> Statement:
    """``fn_job_complete_many`` for these (job id, lease token) pairs."""
    return Statement(COMPLETE_MANY_SQL, ([j for j, _ in jobs], [t for _, t in jobs]))


def parse_complete_many(answer: JsonObject) -> tuple[list[int], list[int]]:
    """(completed ids, lease-lost ids) of a fn_job_complete_many answer."""
    return [int(i) for i in answer["completed"]], [int(i) for i in answer["lease_lost"]]


def complete_many(conn: Conn, jobs: Sequence[tuple[int, UUID]]) -> tuple[list[int], list[int]]:
    """Complete several jobs in one call; return (completed ids, lease-lost ids)."""
    return parse_complete_many(call(conn, *complete_many_statement(jobs)))


FAIL_TRANSIENT_SQL: LiteralString = """
    SELECT conveyor.fn_job_fail_transient(
        job_id => %s::bigint,
        lease_token => %s::uuid,
        error => %s::text,
        retry_in_seconds => %s::numeric
    )
"""


def fail_transient_statement(
    job_id: int, lease_token: UUID, error: str | None = None, retry_in_seconds: float | None = None
) -> Statement:
    """``fn_job_fail_transient`` (the SQL caps *error* at its own length limit)."""
    return Statement(FAIL_TRANSIENT_SQL, (job_id, lease_token, error, retry_in_seconds))


def fail_transient(
    conn: Conn,
    job_id: int,
    lease_token: UUID,
    error: str | None = None,
    *,
    retry_in_seconds: float | None = None,
) -> JsonObject:
    """Report a retryable failure. Wraps ``fn_job_fail_transient``; the answer says whether the
    job was re-queued (``status: queued``, ``run_at``) or dead-lettered (attempts exhausted)."""
    return call(conn, *fail_transient_statement(job_id, lease_token, error, retry_in_seconds))


FAIL_PERMANENT_SQL: LiteralString = """
    SELECT conveyor.fn_job_fail_permanent(
        job_id => %s::bigint,
        lease_token => %s::uuid,
        error => %s::text
    )
"""


def fail_permanent_statement(job_id: int, lease_token: UUID, error: str | None = None) -> Statement:
    """``fn_job_fail_permanent`` (the SQL caps *error* at its own length limit)."""
    return Statement(FAIL_PERMANENT_SQL, (job_id, lease_token, error))


def fail_permanent(
    conn: Conn, job_id: int, lease_token: UUID, error: str | None = None
) -> JsonObject:
    """Send the job to the dead letter queue. Wraps ``fn_job_fail_permanent``."""
    return call(conn, *fail_permanent_statement(job_id, lease_token, error))


EXTEND_SQL: LiteralString = """
    SELECT conveyor.fn_job_extend_lease(
        job_id => %s::bigint,
        lease_token => %s::uuid,
        lease_seconds => %s::integer
    )
"""


def extend_lease_statement(
    job_id: int, lease_token: UUID, lease_seconds: int | None = None
) -> Statement:
    """``fn_job_extend_lease``; *lease_seconds* None: ``queue.lease.default_seconds``."""
    return Statement(EXTEND_SQL, (job_id, lease_token, lease_seconds))


def extend_lease(
    conn: Conn, job_id: int, lease_token: UUID, lease_seconds: int | None = None
) -> JsonObject:
    """Extend the lease; the answer carries ``cancel_requested``. Wraps ``fn_job_extend_lease``."""
    return call(conn, *extend_lease_statement(job_id, lease_token, lease_seconds))


SNOOZE_SQL: LiteralString = """
    SELECT conveyor.fn_job_snooze(
        job_id => %s::bigint,
        lease_token => %s::uuid,
        seconds => %s::numeric
    )
"""


def snooze_statement(job_id: int, lease_token: UUID, seconds: float) -> Statement:
    """``fn_job_snooze``."""
    return Statement(SNOOZE_SQL, (job_id, lease_token, seconds))


def snooze(conn: Conn, job_id: int, lease_token: UUID, seconds: float) -> JsonObject:
    """Put the job back for *seconds* without spending an attempt. Wraps ``fn_job_snooze``."""
    return call(conn, *snooze_statement(job_id, lease_token, seconds))


RELEASE_SQL: LiteralString = """
    SELECT conveyor.fn_job_release(
        job_id => %s::bigint,
        lease_token => %s::uuid
    )
"""


def release_statement(job_id: int, lease_token: UUID) -> Statement:
    """``fn_job_release``."""
    return Statement(RELEASE_SQL, (job_id, lease_token))


def release(conn: Conn, job_id: int, lease_token: UUID) -> JsonObject:
    """Give the job back now without spending an attempt. Wraps ``fn_job_release``."""
    return call(conn, *release_statement(job_id, lease_token))


CANCEL_SQL: LiteralString = """
    SELECT conveyor.fn_job_cancel(
        job_id => %s::bigint,
        reason => %s::text
    )
"""


def cancel(conn: Conn, job_id: int, reason: str | None = None) -> JsonObject:
    """Cancel a queued job, or ask a running one to stop. Wraps ``fn_job_cancel``."""
    return call(conn, *cancel_statement(job_id, reason))


def cancel_statement(job_id: int, reason: str | None = None) -> Statement:
    """``fn_job_cancel``."""
    return Statement(CANCEL_SQL, (job_id, reason))


CANCEL_ACK_SQL: LiteralString = """
    SELECT conveyor.fn_job_cancel_ack(
        job_id => %s::bigint,
        lease_token => %s::uuid
    )
"""


def cancel_ack_statement(job_id: int, lease_token: UUID) -> Statement:
    """``fn_job_cancel_ack``."""
    return Statement(CANCEL_ACK_SQL, (job_id, lease_token))


def cancel_ack(conn: Conn, job_id: int, lease_token: UUID) -> JsonObject:
    """End a cancel-requested running job as cancelled. Wraps ``fn_job_cancel_ack``."""
    return call(conn, *cancel_ack_statement(job_id, lease_token))
