"""Helpers of the Approvals tests: a module database with phases 2–7 applied and the flags the
customer flow needs, and a message driven through its workflow's jobs to awaiting_approval."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from conveyor.phases import runner

MAIL_MARKER = "MAIL-PII-91c2"
DRAFT_MARKER = "DRAFT-PII-5d0e"
FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "workflow.mot.enabled",
    "customer.channel.enabled",
)
Conn = psycopg.Connection[Any]


def prepare(dsn: str) -> str:
    """Apply phases 2–7 on *dsn* and switch the flags on; *dsn*."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 5, 6, 7):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
    return dsn


def _answer(conn: Conn, query: str, params: Any = ()) -> dict[str, Any]:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None and isinstance(row[0], dict), row
    return row[0]


def _claim_and_complete(conn: Conn, queue: str, kind: str, then: Callable[[], Any]) -> None:
    jobs = _answer(
        conn, "SELECT fn_job_claim(worker => 'tests', queues => ARRAY[%s], batch => 1)", (queue,)
    )["jobs"]
    assert [j["kind"] for j in jobs] == [kind]
    then()
    _answer(conn, "SELECT fn_job_complete(%s, %s)", (jobs[0]["job_id"], jobs[0]["lease_token"]))


def awaiting_approval(conn: Conn) -> tuple[int, str]:
    """A new message classified and drafted through its workflow's jobs; (id, draft hash)."""
    queue, account = f"q{uuid.uuid4().hex[:10]}", f"acct-{uuid.uuid4().hex[:8]}"
    got = _answer(
        conn,
        "SELECT fn_customer_message_ingest(%s, 'INBOX', 1, 1, NULL, now(), 'help please',"
        " 'customer@example.invalid', ARRAY['support@example.invalid'], '{}', NULL, NULL, NULL,"
        " %s, NULL, 40, '{}')",
        (account, f"my order is late {MAIL_MARKER}"),
    )
    message_id = int(got["id"])
    conn.execute(
        "UPDATE job_queue SET queue = %s WHERE workflow_id = %s"
        " AND kind <> 'customer_message_approve'",
        (queue, got["workflow_id"]),
    )
    _claim_and_complete(
        conn,
        queue,
        "customer_message_classify",
        lambda: _answer(
            conn, "SELECT fn_customer_message_classify(%s, 'support', 'tests')", (message_id,)
        ),
    )
    drafted: dict[str, Any] = {}
    _claim_and_complete(
        conn,
        queue,
        "customer_message_draft",
        lambda: drafted.update(
            _answer(
                conn,
                "SELECT fn_customer_message_draft(%s, 'Re: help please', %s, 'tests')",
                (message_id, f"Sorry, it ships today.\n{DRAFT_MARKER}"),
            )
        ),
    )
    assert drafted["state"] == "awaiting_approval"
    return message_id, str(drafted["draft_sha256"])


def state_of(conn: Conn, message_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state, approved_by, rejected_by, draft_sha256 FROM v_customer_message"
        " WHERE id = %s",
        (message_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)
