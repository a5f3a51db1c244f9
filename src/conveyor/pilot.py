"""The MARK/CUT pilot (phase 5): the built-in step handlers and the operator's calls.

`registry` holds the handlers for staging.cut, staging.verify_cut and staging.cleanup; run them
with `conveyor worker --executor agent --app conveyor.pilot:registry` (or `conveyor up --pilot`).
Each is transactional: its step function and the job's completion commit together. The rules
(which collection, the flag, the checksum, exactly once) are the SQL functions'; see
sql/phases/5_cut_pilot/ddl.up.sql.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from conveyor.calls import call
from conveyor.errors import ConfigError, Disabled, Refused
from conveyor.handlers import Fail, JobContext, Registry, Snooze
from conveyor.types import JsonObject

registry = Registry()

CUT_SQL: LiteralString = "SELECT conveyor.fn_pilot_cut(record_id => %s, actor => %s, job_id => %s)"
VERIFY_CUT_SQL: LiteralString = "SELECT conveyor.fn_pilot_verify_cut(record_id => %s, actor => %s)"
CLEANUP_SQL: LiteralString = "SELECT conveyor.fn_pilot_cleanup(record_id => %s, actor => %s)"


def _step(context: JobContext, sql: LiteralString, params: tuple[Any, ...]) -> JsonObject:
    """Run one step function on the job's transaction and map its refusals to the attempt's end.

    pilot_cut_disabled snoozes the job for the pause the SQL names (no attempt spent: it waits
    until the flag is back on); any other refusal (checksum_mismatch, not_pilot_collection, …) is
    permanent, so the job goes to the dead letter queue with the refusal as its error.
    """
    try:
        return call(context.conn, sql, params)
    except Disabled as refusal:
        raise Snooze(float(refusal.answer["retry_in_seconds"])) from refusal
    except Refused as refusal:
        raise Fail(f"{context.job.kind} of record {params[0]}: {refusal}") from refusal


@registry.handler("staging.cut", transactional=True)
def cut(context: JobContext) -> JsonObject:
    """Copy the staged payload into pilot_cut_target and cut the record (fn_pilot_cut)."""
    record_id = int(context.payload["record_id"])
    return _step(context, CUT_SQL, (record_id, context.worker, context.job.job_id))


@registry.handler("staging.verify_cut", transactional=True)
def verify_cut(context: JobContext) -> JsonObject:
    """Check the target against the staged checksum and verify the cut (fn_pilot_verify_cut)."""
    record_id = int(context.payload["record_id"])
    return _step(context, VERIFY_CUT_SQL, (record_id, context.worker))


@registry.handler("staging.cleanup", transactional=True)
def cleanup(context: JobContext) -> JsonObject:
    """Clear the staged payload and clean the record up (fn_pilot_cleanup)."""
    record_id = int(context.payload["record_id"])
    return _step(context, CLEANUP_SQL, (record_id, context.worker))


# ------------------------------------------------------------------ the operator's calls

MARK_SQL: LiteralString = """
    SELECT conveyor.fn_pilot_mark(collection => %s, record_key => %s, payload => %s, actor => %s,
                                  content_ref => %s)
"""
APPROVE_SQL: LiteralString = "SELECT iu_core.fn_iu_op_approve(record_id => %s, actor => %s)"


def mark(
    conn: psycopg.Connection[Any],
    collection: str,
    record_key: str,
    payload: str,
    actor: str,
    content_ref: str | None = None,
) -> int:
    """Stage *record_key* in *collection* with *payload*; return the record id (fn_pilot_mark).

    Raises InvalidInput for an unknown collection or an oversized payload, and
    psycopg.errors.UniqueViolation when the key is already staged; nothing is written then.
    """
    answer = call(conn, MARK_SQL, (collection, record_key, payload, actor, content_ref))
    return int(answer["record_id"])


def approve(conn: psycopg.Connection[Any], record_id: int, actor: str) -> JsonObject:
    """APPROVE a marked record (iu_core.fn_iu_op_approve); Refused if it is not marked."""
    return call(conn, APPROVE_SQL, (record_id, actor))


@dataclass(frozen=True, slots=True)
class StagedRecord:
    """One row of v_iu_staging_record (phase 5's columns included)."""

    id: int
    collection: str
    record_key: str
    status: str
    next_op: str | None
    pilot: bool
    stuck: bool
    waiting_seconds: float | None
    payload_bytes: int | None
    steps: tuple[tuple[str, str | None, datetime | None], ...]  # (step, by, at)
    step_job_id: int | None
    step_job_status: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StagedRecord:
        steps = tuple(
            (step, row[f"{step}_by"], row[f"{step}_at"])
            for step in ("marked", "approved", "cut", "verified", "cleaned")
        )
        return cls(
            id=int(row["id"]),
            collection=str(row["collection"]),
            record_key=str(row["record_key"]),
            status=str(row["status"]),
            next_op=row["next_op"],
            pilot=bool(row["pilot"]),
            stuck=bool(row["stuck"]),
            waiting_seconds=row["waiting_seconds"],
            payload_bytes=row["payload_bytes"],
            steps=steps,
            step_job_id=row["step_job_id"],
            step_job_status=row["step_job_status"],
        )


RECORDS_SQL: LiteralString = """
    SELECT r.* FROM conveyor.v_iu_staging_record AS r
     WHERE (%(collection)s::text IS NULL OR r.collection = %(collection)s)
       AND (%(status)s::text IS NULL OR r.status = %(status)s)
       AND (%(id)s::bigint IS NULL OR r.id = %(id)s)
     ORDER BY r.id
     LIMIT %(limit)s
"""


def records(
    conn: psycopg.Connection[Any],
    collection: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[StagedRecord]:
    """Staged records from v_iu_staging_record, oldest first; None means any."""
    params = {"collection": collection, "status": status, "id": None, "limit": limit}
    with conn.cursor(row_factory=dict_row) as cursor:
        return [StagedRecord.from_row(r) for r in cursor.execute(RECORDS_SQL, params)]


def record(conn: psycopg.Connection[Any], record_id: int) -> StagedRecord | None:
    """The record *record_id*, or None when there is none."""
    params = {"collection": None, "status": None, "id": record_id, "limit": 1}
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(RECORDS_SQL, params).fetchone()
    return StagedRecord.from_row(row) if row else None


@dataclass(frozen=True, slots=True)
class StepJob:
    """A job that carried one of a record's steps (live, finished or dead-lettered).

    *worker* is the worker that holds (or last held) its lease.
    """

    job_id: int
    kind: str
    status: str
    attempts: int
    worker: str | None
    finished_at: datetime | None
    error: str | None


STEP_JOBS_SQL: LiteralString = """
    SELECT jq.id, jq.kind, jq.status, jq.attempts, jq.leased_by,
           jq.finished_at, jq.last_error
      FROM conveyor.job_queue AS jq
     WHERE jq.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')
       AND jq.payload ->> 'record_id' = %(id)s::text
    UNION ALL
    SELECT dl.job_id, dl.kind, 'dead_letter', (dl.job ->> 'attempts')::integer, NULL,
           dl.failed_at, dl.error
      FROM conveyor.job_dead_letter AS dl
     WHERE dl.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')
       AND dl.job -> 'payload' ->> 'record_id' = %(id)s::text
     ORDER BY 1
"""


def step_jobs(conn: psycopg.Connection[Any], record_id: int) -> list[StepJob]:
    """The jobs that carried *record_id*'s steps, in order."""
    rows = conn.execute(STEP_JOBS_SQL, {"id": record_id}).fetchall()
    return [StepJob(int(r[0]), r[1], r[2], int(r[3] or 0), r[4], r[5], r[6]) for r in rows]


# ------------------------------------------------------------------ one record, for `conveyor demo`

CONFIG_SQL: LiteralString = (
    "SELECT conveyor.fn_config_set(key => %s, value => 'true'::jsonb, updated_by => %s)"
)
COLLECTION_SQL: LiteralString = "SELECT conveyor.fn_config_get('pilot.cut.collection') #>> '{}'"
DISPATCH_SQL: LiteralString = "SELECT conveyor.fn_consumer_dispatch()"
# the pilot's worker: `conveyor worker --executor agent --app conveyor.pilot:registry`
WORKER_ARGS = ("worker", "--executor", "agent", "--app", "conveyor.pilot:registry")


def demo_one(
    conn: psycopg.Connection[Any], url: str, *, timeout: float = 30.0, actor: str = "demo"
) -> StagedRecord:
    """Push one record of the pilot collection through MARK → … → CLEANUP; return it cleaned.

    Needs phases 0–5 applied and an autocommit *conn* as conveyor_admin. Switches the job
    substrate, dispatch and the pilot on, marks and approves a record, runs a pilot worker
    process (executor agent) against *url* and dispatches until the record is cleaned; the
    operator never touches CUT. Raises ConfigError when it is not cleaned within *timeout* s.
    """
    for key in ("queue.job_substrate.enabled", "queue.dispatch.enabled", "pilot.cut.enabled"):
        call(conn, CONFIG_SQL, (key, actor))
    row = conn.execute(COLLECTION_SQL).fetchone()
    collection = str(row[0]) if row else "pilot"
    record_id = mark(conn, collection, f"demo-{uuid.uuid4().hex[:8]}", "demo payload", actor)
    approve(conn, record_id, actor)
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *WORKER_ARGS, "--poll-interval", "0.1"],
        env={**os.environ, "CONVEYOR_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn.execute(DISPATCH_SQL)
            current = record(conn, record_id)
            if current is not None and current.status == "cleaned":
                conn.execute(DISPATCH_SQL)  # staging.record_cleaned: the terminal row
                return current
            time.sleep(0.1)
        raise ConfigError(
            f"pilot record {record_id} was not cleaned within {timeout} s; "
            f"see `conveyor staging show {record_id}`"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
