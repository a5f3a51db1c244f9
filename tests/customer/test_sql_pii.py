"""The PII boundary of phase 7: a unique sentinel in an inbound mail is found in
customer_message_body only — in no other table or view of any conveyor schema (job_queue,
event_outbox, job_dead_letter among them) after the whole flow ran; only conveyor_pii reads the
body table and calls the functions that take or return PII; the gate passes."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg import sql as pgsql

from conveyor.phases import runner
from customer.sqlsupport import (
    Conn,
    account,
    answer,
    claim,
    complete,
    customer_dsn,
    ingest,
    move_workflow_to_queue,
    sql,
)

__all__ = ["customer_dsn", "sql"]

SCHEMAS = ["conveyor", "iu_core", "conveyor_meta"]
PII_FUNCTIONS = (
    "conveyor.fn_customer_message_ingest(text,text,bigint,bigint,text,timestamp with time zone,"
    "text,text,text[],text[],text,text,text,text,text,integer,text[])",
    "conveyor.fn_customer_send_begin(bigint,bigint)",
    "conveyor.fn_customer_message_body(bigint)",
    "conveyor.fn_customer_message_draft(bigint,text,text,text)",
    "conveyor.fn_customer_message_edit(bigint,text,text,text)",
)
WORKER_FUNCTIONS = (
    "conveyor.fn_customer_mailbox_cursor(text,text)",
    "conveyor.fn_customer_mailbox_advance(text,text,bigint,bigint)",
    "conveyor.fn_customer_message_classify(bigint,text,text)",
    "conveyor.fn_customer_send_finish(bigint,text,text)",
)
OPERATOR_FUNCTIONS = (
    "conveyor.fn_customer_message_approve(bigint,text,text)",
    "conveyor.fn_customer_message_revoke(bigint,text)",
    "conveyor.fn_customer_message_reject(bigint,text,text)",
    "conveyor.fn_customer_message_reconcile(bigint,text,text,text)",
)
PRIVATE_FUNCTIONS = (
    "conveyor.fn_customer__sha256(text)",
    "conveyor.fn_customer__lock(bigint)",
    "conveyor.fn_customer__actor(text,text,text)",
    "conveyor.fn_customer__release_send(bigint,text)",
    "conveyor.fn_customer__store_draft(bigint,text,text,text)",
    "conveyor.fn_customer__approve_step_released()",
)


def _run_flow_with(sql: Conn, sentinel: str) -> int:
    queue = f"q{uuid.uuid4().hex[:10]}"
    got = ingest(
        sql,
        account(),
        1,
        message_id=f"<{sentinel}@mail.invalid>",
        body=f"my card is {sentinel}",
        subject=f"about {sentinel}",
        sender=f"{sentinel}@customer.invalid",
    )
    mid = int(got["id"])
    move_workflow_to_queue(sql, got["workflow_id"], queue)
    job = claim(sql, queue)
    assert job is not None
    answer(sql, "SELECT conveyor.fn_customer_message_classify(%s, 'billing', 'test')", (mid,))
    complete(sql, job)
    job = claim(sql, queue)
    assert job is not None
    drafted = answer(
        sql,
        "SELECT conveyor.fn_customer_message_draft(%s, %s, %s, 'test')",
        (mid, f"Re: about {sentinel}", f"You wrote {sentinel}"),
    )
    complete(sql, job)
    answer(
        sql,
        "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')",
        (mid, drafted["draft_sha256"]),
    )
    job = claim(sql, queue)
    assert job is not None
    begun = answer(sql, "SELECT conveyor.fn_customer_send_begin(%s, %s)", (mid, job["job_id"]))
    answer(
        sql, "SELECT conveyor.fn_customer_send_finish(%s, 'sent', '250 ok')", (begun["send_id"],)
    )
    complete(sql, job, '{"outcome": "sent"}')
    answer(sql, "SELECT conveyor.fn_customer_message_reject(%s, 'x', 'late')", (mid,))  # refused
    return mid


def _relations(sql: Conn) -> list[str]:
    rows = sql.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY (%s) AND c.relkind IN ('r', 'v', 'm', 'p')"
        " ORDER BY 1",
        (SCHEMAS,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def test_the_sentinel_is_only_in_customer_message_body(sql: Conn) -> None:
    sentinel = f"PII{uuid.uuid4().hex}"
    _run_flow_with(sql, sentinel)
    found = []
    for relation in _relations(sql):
        schema, name = relation.split(".")
        hit = sql.execute(
            pgsql.SQL("SELECT EXISTS (SELECT 1 FROM {} AS x WHERE strpos(x::text, %s) > 0)").format(
                pgsql.Identifier(schema, name)
            ),
            (sentinel,),
        ).fetchone()
        if hit and hit[0]:
            found.append(relation)

    assert found == ["conveyor.customer_message_body"]
    assert len(_relations(sql)) > 30


def _as(conn: Conn, role: str) -> None:
    conn.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(role)))


def _denied(conn: Conn, query: str, params: Any = ()) -> bool:
    try:
        with conn.transaction():
            conn.execute(query.encode(), params)
    except errors.InsufficientPrivilege:
        return True
    return False


def test_only_conveyor_pii_reads_the_body_table_and_calls_the_pii_functions(
    customer_dsn: str,
) -> None:
    with psycopg.connect(customer_dsn) as conn:
        mid = ingest(conn, account(), 1, body="secret")["id"]
        _as(conn, "conveyor_worker")
        worker = [
            _denied(conn, "SELECT * FROM conveyor.customer_message_body"),
            _denied(conn, "SELECT conveyor.fn_customer_message_body(%s)", (mid,)),
            _denied(conn, "SELECT conveyor.fn_customer_send_begin(%s, NULL)", (mid,)),
            _denied(conn, "SELECT * FROM conveyor.customer_message"),
        ]
        conn.execute("RESET ROLE")
        _as(conn, "conveyor_reader")
        reader = [
            _denied(conn, "SELECT * FROM conveyor.customer_message_body"),
            _denied(conn, "SELECT conveyor.fn_customer_message_body(%s)", (mid,)),
            _denied(conn, "SELECT count(*) FROM conveyor.v_customer_message"),
            _denied(conn, "SELECT count(*) FROM conveyor.v_customer_message_health"),
        ]
        conn.execute("RESET ROLE")
        _as(conn, "conveyor_pii")
        text = conn.execute(
            "SELECT text_body FROM conveyor.customer_message_body WHERE message_id = %s", (mid,)
        ).fetchone()
        body = conn.execute("SELECT conveyor.fn_customer_message_body(%s)", (mid,)).fetchone()
        conn.rollback()

    assert worker == [True, True, True, True]
    assert reader == [True, True, False, False]
    assert text == ("secret",)
    assert body is not None and body[0]["text"] == "secret"


@pytest.mark.parametrize("function", PII_FUNCTIONS + WORKER_FUNCTIONS + OPERATOR_FUNCTIONS)
def test_each_function_is_granted_exactly_to_its_roles(sql: Conn, function: str) -> None:
    roles = ("conveyor_pii", "conveyor_worker", "conveyor_reader", "public")
    granted = {
        role: sql.execute(
            "SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (role, function)
        ).fetchone()
        == (True,)
        for role in roles
    }
    expected = {
        "conveyor_pii": function not in OPERATOR_FUNCTIONS,
        "conveyor_worker": function in WORKER_FUNCTIONS,
        "conveyor_reader": False,
        "public": False,
    }
    assert granted == expected


@pytest.mark.parametrize("function", PRIVATE_FUNCTIONS)
def test_private_helpers_are_executable_by_no_runtime_role(sql: Conn, function: str) -> None:
    granted = [
        sql.execute(
            "SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (role, function)
        ).fetchone()
        for role in ("conveyor_pii", "conveyor_worker", "conveyor_reader", "public")
    ]
    comment = sql.execute(
        "SELECT obj_description(%s::regprocedure, 'pg_proc')", (function,)
    ).fetchone()
    assert granted == [(False,)] * 4
    assert comment is not None and str(comment[0]).startswith("Private:")


def test_the_gate_passes_with_traffic_in_the_database(sql: Conn) -> None:
    _run_flow_with(sql, f"PII{uuid.uuid4().hex}")
    result = runner.verify(sql, 7, "tests")
    assert result.failures == []
    assert len(result.items) >= 8
