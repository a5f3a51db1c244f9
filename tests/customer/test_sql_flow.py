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


def test_an_edit_after_approval_voids_it_and_a_new_approval_enqueues_a_fresh_send_job(
    sql: Conn,
) -> None:
    mid, queue, digest = _to_approval(sql)
    answer(sql, "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')", (mid, digest))
    job = claim(sql, queue)
    assert job is not None and job["kind"] == "customer_message_send"

    edited = answer(
        sql, "SELECT conveyor.fn_customer_message_edit(%s, NULL, 'better reply', 'bob')", (mid,)
    )
    refused = _begin(sql, mid, job["job_id"])
    complete(sql, job, '{"outcome": "approval_void"}')
    stale = answer(
        sql, "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')", (mid, digest)
    )
    again = answer(
        sql,
        "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')",
        (mid, edited["draft_sha256"]),
    )
    fresh = answer(
        sql,
        "SELECT to_jsonb(j) FROM conveyor.job_queue AS j WHERE j.id = %s",
        (again["send"]["job_id"],),
    )

    assert edited["draft_sha256"] != digest and edited["state"] == "awaiting_approval"
    assert refused["reason"] == "approval_void"
    assert stale["reason"] == "draft_changed"
    assert again["send"]["released"] == "new_job"
    assert (fresh["kind"], fresh["queue"], fresh["payload"], fresh["status"]) == (
        "customer_message_send",
        "customer",
        {"message_id": mid},
        "queued",
    )
    begun = _begin(sql, mid, fresh["id"])
    assert begun["text"] == "better reply"
    assert message(sql, mid)["send_state"] == "sending"


def test_a_revoke_voids_the_approval_and_send_begin_refuses(sql: Conn) -> None:
    mid, _queue, digest = _to_approval(sql)
    answer(sql, "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')", (mid, digest))
    revoked = answer(sql, "SELECT conveyor.fn_customer_message_revoke(%s, 'alice')", (mid,))

    assert revoked["state"] == "awaiting_approval"
    assert _begin(sql, mid)["reason"] == "approval_void"
    row = message(sql, mid)
    assert row["approved_by"] is None and row["approval_voided_at"] is not None
    assert sql.execute(
        "SELECT count(*) FROM conveyor.customer_message_send WHERE message_id = %s", (mid,)
    ).fetchone() == (0,)


def _approved_and_claimed(sql: Conn) -> tuple[int, dict[str, Any]]:
    mid, queue, digest = _to_approval(sql)
    answer(sql, "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')", (mid, digest))
    job = claim(sql, queue)
    assert job is not None
    return mid, job


def test_a_second_begin_while_sending_goes_to_reconcile_and_never_sends_again(sql: Conn) -> None:
    mid, job = _approved_and_claimed(sql)
    first = _begin(sql, mid, job["job_id"])
    second = _begin(sql, mid, job["job_id"])  # the same job after a crash after DATA
    third = _begin(sql, mid, job["job_id"])

    assert "send_id" in first
    assert second["reason"] == "reconcile_required"
    assert third["reason"] == "reconcile_required"
    assert message(sql, mid)["state"] == "reconcile"
    sent = answer(
        sql,
        "SELECT conveyor.fn_customer_message_reconcile(%s, 'sent', 'carol', 'in Sent folder')",
        (mid,),
    )
    assert sent["state"] == "sent"
    assert _begin(sql, mid)["reason"] == "already_sent"


def test_reconcile_not_sent_lets_the_live_job_or_a_fresh_one_send(sql: Conn) -> None:
    mid, job = _approved_and_claimed(sql)
    begun = _begin(sql, mid, job["job_id"])
    unknown = answer(
        sql,
        "SELECT conveyor.fn_customer_send_finish(%s, 'unknown', '421 closing')",
        (begun["send_id"],),
    )
    complete(sql, job, '{"outcome": "unknown"}')
    decided = answer(
        sql,
        "SELECT conveyor.fn_customer_message_reconcile(%s, 'not_sent', 'carol', 'not in log')",
        (mid,),
    )

    assert unknown["state"] == "reconcile"
    assert decided["state"] == "approved" and decided["send"]["released"] == "new_job"
    again = _begin(sql, mid, decided["send"]["job_id"])
    assert again["send_id"] != begun["send_id"]


def test_not_sent_returns_the_message_to_approved_and_a_retry_begins_again(sql: Conn) -> None:
    mid, job = _approved_and_claimed(sql)
    begun = _begin(sql, mid, job["job_id"])
    failed = answer(
        sql,
        "SELECT conveyor.fn_customer_send_finish(%s, 'not_sent', '550 no')",
        (begun["send_id"],),
    )
    state_after = message(sql, mid)["state"]
    retried = _begin(sql, mid, job["job_id"])
    twice = answer(
        sql, "SELECT conveyor.fn_customer_send_finish(%s, 'sent', '250')", (begun["send_id"],)
    )

    assert failed["state"] == "not_sent" and state_after == "approved"
    assert retried["send_id"] != begun["send_id"]
    assert twice["reason"] == "not_sending"


def test_reject_cancels_the_workflow_and_begin_refuses(sql: Conn) -> None:
    mid, _queue, _digest = _to_approval(sql)
    rejected = answer(
        sql, "SELECT conveyor.fn_customer_message_reject(%s, 'dave', 'abusive')", (mid,)
    )
    workflow = sql.execute(
        "SELECT jw.status FROM conveyor.job_workflow AS jw"
        " JOIN conveyor.customer_message AS cm ON cm.workflow_id = jw.id WHERE cm.id = %s",
        (mid,),
    ).fetchone()

    assert rejected["state"] == "rejected"
    assert workflow == ("cancelled",)
    assert _begin(sql, mid)["reason"] == "rejected"


def test_without_approve_required_the_draft_is_approved_by_auto_and_send_released(
    sql: Conn,
) -> None:
    sql.execute("SELECT conveyor.fn_config_set('customer.approve_required', 'false')")
    try:
        queue = f"q{uuid.uuid4().hex[:10]}"
        got = ingest(sql, account(), 1)
        move_workflow_to_queue(sql, got["workflow_id"], queue)
        for _ in range(2):
            job = claim(sql, queue)
            assert job is not None
            if job["kind"] == "customer_message_classify":
                answer(
                    sql, "SELECT conveyor.fn_customer_message_classify(%s, 'other')", (got["id"],)
                )
            else:
                drafted = answer(
                    sql, "SELECT conveyor.fn_customer_message_draft(%s, 'Re', 'hi')", (got["id"],)
                )
            complete(sql, job)  # its own transaction: the approve step completes at commit
        send = claim(sql, queue)
    finally:
        sql.execute("SELECT conveyor.fn_config_set('customer.approve_required', 'true')")

    assert drafted["approved_by"] == "auto"
    assert send is not None and send["kind"] == "customer_message_send"
    row = message(sql, got["id"])
    assert (row["state"], row["approved_by"]) == ("approved", "auto")
    completed_by = sql.execute(
        "SELECT completed_by FROM conveyor.job_workflow_step"
        " WHERE workflow_id = %s AND step_key = 'approve'",
        (got["workflow_id"],),
    ).fetchone()
    assert completed_by == ("auto",)
