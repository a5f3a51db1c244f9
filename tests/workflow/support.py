"""Small SQL shorthands for the workflow tests (the rules they exercise live in the SQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from helpers import scalar

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Leased:
    job_id: int
    token: UUID
    kind: str
    payload: dict[str, Any]


def emit(conn: Conn, template: str, params: dict[str, Any] | None = None, **options: Any) -> int:
    answer = scalar(
        conn,
        "SELECT fn_mot_graph_emit(template => %s, params => %s, idempotency_key => %s)",
        (template, Jsonb(params or {}), options.get("idempotency_key")),
    )
    assert answer.get("ok"), answer
    return int(answer["workflow_id"])


def claim(conn: Conn, queue: str, batch: int = 100) -> list[Leased]:
    answer = scalar(
        conn,
        "SELECT fn_job_claim(worker => 'tests', queues => %s, batch => %s)",
        ([queue], batch),
    )
    return [
        Leased(int(j["job_id"]), UUID(j["lease_token"]), str(j["kind"]), dict(j["payload"]))
        for j in answer["jobs"]
    ]


def claim_step(conn: Conn, queue: str, workflow: int, key: str) -> Leased:
    """Claim everything queued on *queue* and return the lease of step *key* (others released)."""
    job_id = step_job(conn, workflow, key)
    leased = claim(conn, queue)
    for other in leased:
        if other.job_id != job_id:
            conn.execute("SELECT fn_job_release(%s, %s)", (other.job_id, other.token))
    matching = [lease for lease in leased if lease.job_id == job_id]
    assert matching, f"step {key} ({job_id}) was not claimable: {states(conn, workflow)}"
    return matching[0]


def complete(conn: Conn, lease: Leased, result: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = scalar(
        conn,
        "SELECT fn_job_complete(%s, %s, %s)",
        (lease.job_id, lease.token, Jsonb(result) if result is not None else None),
    )
    assert answer.get("ok"), answer
    return answer


def fail(conn: Conn, lease: Leased) -> None:
    answer = scalar(
        conn, "SELECT fn_job_fail_permanent(%s, %s, 'broken')", (lease.job_id, lease.token)
    )
    assert answer.get("ok"), answer


def run_step(conn: Conn, queue: str, workflow: int, key: str, result: Any = None) -> None:
    complete(conn, claim_step(conn, queue, workflow, key), result)


def step_job(conn: Conn, workflow: int, key: str) -> int:
    return int(
        scalar(
            conn,
            "SELECT job_id FROM job_workflow_step WHERE workflow_id = %s AND step_key = %s",
            (workflow, key),
        )
    )


def states(conn: Conn, workflow: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT step_key, state FROM v_job_workflow_step WHERE workflow_id = %s ORDER BY ord",
        (workflow,),
    ).fetchall()
    return {str(k): str(s) for k, s in rows}


def status(conn: Conn, workflow: int) -> str:
    return str(scalar(conn, "SELECT status FROM job_workflow WHERE id = %s", (workflow,)))
