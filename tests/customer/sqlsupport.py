"""Fixtures and helpers of p7-sql's phase 7 tests (tests/customer/test_sql_*.py and
test_messages_cli.py): a module database with phases 2–7 applied on the template's 0 and 1, the
flags the flow needs switched on, and small helpers that drive a message through the queue
functions. Import the fixtures into a test module with ``from sqlsupport import *``-style names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor.customer import handlers, store
from conveyor.errors import Refused
from conveyor.handlers import JobContext, Registry
from conveyor.phases import runner

Conn = psycopg.Connection[Any]

FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "workflow.mot.enabled",
    "customer.channel.enabled",
)


def apply_through_7(conn: Conn) -> None:
    for number in (2, 3, 4, 5, 6, 7):
        runner.ratify(conn, number, "tests")
        result = runner.apply(conn, number, "tests")
        assert result.already_applied or (result.gate is not None and result.gate.passed), (
            result.gate.failures if result.gate else "no gate run"
        )


@pytest.fixture(scope="module")
def customer_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_through_7(conn)
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
    return dsn


@pytest.fixture
def sql(customer_dsn: str) -> Iterator[Conn]:
    """An autocommit superuser connection (search_path conveyor, public)."""
    with psycopg.connect(
        customer_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


def answer(conn: Conn, query: str, params: Any = ()) -> dict[str, Any]:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, dict), value
    return value


def account() -> str:
    """An account name of the test's own (its messages and queues mix with no other test's)."""
    return f"acct-{uuid.uuid4().hex[:10]}"


def ingest(
    conn: Conn,
    acct: str,
    uid: int,
    *,
    uidvalidity: int = 1,
    message_id: str | None = None,
    body: str = "hello",
    subject: str = "question",
    sender: str = "customer@example.invalid",
    problems: list[str] | None = None,
) -> dict[str, Any]:
    return answer(
        conn,
        "SELECT conveyor.fn_customer_message_ingest(%s, 'INBOX', %s, %s, %s, now(), %s, %s,"
        " ARRAY['support@example.invalid'], '{}', NULL, NULL, NULL, %s, NULL, %s, %s)",
        (acct, uidvalidity, uid, message_id, subject, sender, body, len(body), problems or []),
    )


def move_workflow_to_queue(conn: Conn, workflow_id: int, queue: str) -> None:
    """Put a workflow's worker jobs on a queue of the test's own (the template names queue
    customer; the approve step stays on queue operator, for a person)."""
    conn.execute(
        "UPDATE conveyor.job_queue SET queue = %s"
        " WHERE workflow_id = %s AND kind <> 'customer_message_approve'",
        (queue, workflow_id),
    )


def claim(conn: Conn, queue: str) -> dict[str, Any] | None:
    jobs = answer(
        conn,
        "SELECT conveyor.fn_job_claim(worker => 'sqltest', queues => ARRAY[%s], batch => 1)",
        (queue,),
    )["jobs"]
    return jobs[0] if jobs else None


def complete(conn: Conn, job: dict[str, Any], result: str = '{"outcome": "ok"}') -> None:
    answer(
        conn,
        "SELECT conveyor.fn_job_complete(%s, %s, %s::jsonb)",
        (job["job_id"], job["lease_token"], result),
    )


def message(conn: Conn, message_id: int) -> dict[str, Any]:
    cursor = conn.execute(
        "SELECT to_jsonb(m) FROM conveyor.v_customer_message AS m WHERE m.id = %s", (message_id,)
    )
    row = cursor.fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, dict)
    return value


# ------------------------------------------------------------------ a worker app for the flow

# `conveyor worker --app customer.sqlsupport:registry`: phase 7's default classify and draft
# handlers plus a send handler that runs the send protocol (begin committed on its own, then
# finish) with no SMTP server: the delivery itself is p7-mail's (conveyor.customer.channel).
registry = Registry()
handlers.register(registry)


@registry.handler("customer_message_send")
def _send(context: JobContext) -> dict[str, Any]:
    message_id = int(context.payload["message_id"])
    with psycopg.connect(os.environ["CONVEYOR_DATABASE_URL"], autocommit=True) as conn:
        try:
            begun = store.send_begin(conn, message_id, context.job.job_id)
        except Refused as refusal:
            return {"message_id": message_id, "outcome": refusal.reason}
        store.send_finish(conn, int(begun["send_id"]), "sent", "250 2.0.0 accepted (no SMTP)")
    return {"message_id": message_id, "outcome": "sent", "send_id": begun["send_id"]}
