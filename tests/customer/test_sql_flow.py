"""Phase 7's flow through the queue functions: ingest → classify → draft → approve → send, the
approval bound to the draft's hash, the send exactly once (second begin → reconcile)."""

from __future__ import annotations

import uuid
from typing import Any

from customer.sqlsupport import (
    Conn,
    account,
    answer,
    claim,
    complete,
    customer_dsn,
    ingest,
    message,
    move_workflow_to_queue,
    sql,
)

__all__ = ["customer_dsn", "sql"]


def _to_approval(sql: Conn) -> tuple[int, str, str]:
    """A message classified and drafted through its workflow's jobs; (id, queue, draft hash)."""
    queue = f"q{uuid.uuid4().hex[:10]}"
    got = ingest(sql, account(), 1)
    move_workflow_to_queue(sql, got["workflow_id"], queue)
    job = claim(sql, queue)
    assert job is not None and job["kind"] == "customer_message_classify"
    assert job["payload"] == {"message_id": got["id"]}
    answer(sql, "SELECT conveyor.fn_customer_message_classify(%s, 'support', 't')", (got["id"],))
    complete(sql, job)
    job = claim(sql, queue)
    assert job is not None and job["kind"] == "customer_message_draft"
    drafted = answer(
        sql, "SELECT conveyor.fn_customer_message_draft(%s, 'Re: q', 'reply', 't')", (got["id"],)
    )
    complete(sql, job)
    assert drafted["state"] == "awaiting_approval"
    return int(got["id"]), queue, str(drafted["draft_sha256"])


def _begin(sql: Conn, message_id: int, job_id: Any = None) -> dict[str, Any]:
    return answer(sql, "SELECT conveyor.fn_customer_send_begin(%s, %s)", (message_id, job_id))


def test_the_whole_flow_sends_once_after_approval(sql: Conn) -> None:
    mid, queue, digest = _to_approval(sql)
    assert claim(sql, queue) is None  # send waits on the person's approval
    assert _begin(sql, mid)["reason"] == "not_approved"

    approved = answer(
        sql, "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')", (mid, digest)
    )
    job = claim(sql, queue)
    assert job is not None and job["kind"] == "customer_message_send"
    begun = _begin(sql, mid, job["job_id"])
    finished = answer(
        sql, "SELECT conveyor.fn_customer_send_finish(%s, 'sent', '250 ok')", (begun["send_id"],)
    )
    complete(sql, job)

    row = message(sql, mid)
    assert approved["send"]["released"] == "workflow_step"
    assert begun["text"] == "reply" and begun["to"] == ["customer@example.invalid"]
    assert finished["state"] == "sent"
    assert (row["state"], row["approved_by"], row["send_state"]) == ("sent", "alice", "sent")
    assert _begin(sql, mid)["reason"] == "already_sent"
