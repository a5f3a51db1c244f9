"""Helpers of the pilot tests: stage and approve records with plain SQL, read where they stand."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

Sql = psycopg.Connection[Any]
Starter = Callable[..., subprocess.Popen[bytes]]


def stage(
    sql: psycopg.Connection[Any], count: int, collection: str = "pilot", approve: bool = True
) -> list[int]:
    """MARK *count* records (payload: their key) and, in one transaction, APPROVE them all."""
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{n}" for n in range(count)]
    if collection == "pilot":
        marked = sql.execute(
            "SELECT (conveyor.fn_pilot_mark(%s, k, 'payload of ' || k, 'operator') ->> 'record_id')"
            "::bigint FROM unnest(%s::text[]) AS k",
            (collection, keys),
        ).fetchall()
    else:  # another collection: the platform's own MARK, which the pilot never sees
        marked = sql.execute(
            "SELECT (iu_core.fn_iu_op_mark(%s, k, 'operator') ->> 'record_id')::bigint"
            " FROM unnest(%s::text[]) AS k",
            (collection, keys),
        ).fetchall()
    ids = [int(r[0]) for r in marked]
    if approve:
        sql.execute(
            "SELECT iu_core.fn_iu_op_approve(id, 'operator') FROM unnest(%s::bigint[]) AS id",
            (ids,),
        )
    return ids


def statuses(sql: psycopg.Connection[Any], ids: list[int]) -> dict[str, int]:
    rows = sql.execute(
        "SELECT r.status, count(*) FROM iu_core.iu_staging_record AS r"
        " WHERE r.id = ANY(%s) GROUP BY r.status",
        (ids,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def all_cleaned(sql: psycopg.Connection[Any], ids: list[int]) -> bool:
    return statuses(sql, ids) == {"cleaned": len(ids)}


def events(sql: psycopg.Connection[Any], ids: list[int]) -> dict[str, int]:
    """How many outbox events of each staging type name one of *ids*."""
    rows = sql.execute(
        "SELECT eo.event_type, count(*) FROM conveyor.event_outbox AS eo"
        " WHERE eo.event_type LIKE 'staging.%%'"
        "   AND (eo.payload ->> 'record_id')::bigint = ANY(%s) GROUP BY eo.event_type",
        (ids,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def step_jobs(sql: psycopg.Connection[Any], ids: list[int]) -> dict[tuple[str, str], int]:
    """(kind, status) → count of the pilot's jobs for *ids*."""
    rows = sql.execute(
        "SELECT jq.kind, jq.status, count(*) FROM conveyor.job_queue AS jq"
        " WHERE jq.kind LIKE 'staging.%%' AND (jq.payload ->> 'record_id')::bigint = ANY(%s)"
        " GROUP BY jq.kind, jq.status",
        (ids,),
    ).fetchall()
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}
