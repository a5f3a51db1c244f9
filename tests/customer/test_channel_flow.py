"""The whole journey through a real `conveyor channel run`: mail delivered to Dovecot over LMTP →
inbound poll → classify → draft → approve → SMTP send to the aiosmtpd sink; the unattended
flow with approve_required off; and where a PII sentinel and the password may appear."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from customer.channelsupport import Box, channel_log, message, message_ids, states
from helpers import wait_until

Conn = psycopg.Connection[Any]


def _approve(sql: Conn, message_id: int) -> None:
    answer = sql.execute(
        "SELECT conveyor.fn_customer_message_approve(message_id => %s, actor => 'tests')",
        (message_id,),
    ).fetchone()
    assert answer is not None and answer[0].get("ok"), answer


def test_round_trip_with_a_person_approving(
    sql: Conn, box: Box, start_channel: Callable[..., Any]
) -> None:
    original_id = f"<{uuid.uuid4().hex}@example.org>"
    box.deliver(message("Hello, my invoice 42 is wrong.", message_id=original_id))
    adapter = start_channel(box.env())

    wait_until(lambda: states(sql, box.user) == ["awaiting_approval"], timeout=60)
    assert box.sink.messages() == []  # nothing leaves before a person approves
    [message_id] = message_ids(sql, box.user)
    _approve(sql, message_id)

    wait_until(lambda: states(sql, box.user) == ["sent"], timeout=60)
    [raw] = box.sink.messages()
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert sent["In-Reply-To"] == original_id
    assert original_id in str(sent["References"])
    assert sent["From"] == f"{box.user}@localhost"
    assert "customer@example.org" in str(sent["To"])
    header = sql.execute(
        "SELECT message_id_header FROM conveyor.customer_message_send WHERE message_id = %s",
        (message_id,),
    ).fetchone()
    assert header is not None and sent["Message-ID"] == header[0]
    dead = sql.execute(
        "SELECT count(*) FROM conveyor.job_dead_letter WHERE kind LIKE 'customer_message%%'"
    ).fetchone()
    assert dead == (0,)
    assert "Traceback" not in channel_log(adapter)


def test_unattended_flow_and_no_duplicate_on_a_second_delivery(
    sql: Conn, box: Box, start_channel: Callable[..., Any], approve_required: Any
) -> None:
    approve_required(False)
    same = message("Please cancel my order.", subject="Cancel")
    box.deliver(same)
    box.deliver(same)  # the same Message-ID twice (a resend by the customer's client)
    box.deliver(message("Another question."))
    start_channel(box.env())

    wait_until(lambda: states(sql, box.user) == ["sent", "sent"], timeout=60)
    wait_until(lambda: len(box.sink.messages()) == 2, timeout=30)
    approver = sql.execute(
        "SELECT array_agg(DISTINCT approved_by) FROM conveyor.customer_message WHERE account = %s",
        (box.user,),
    ).fetchone()
    assert approver == (["auto"],)


def _rows_containing(sql: Conn, needle: str) -> list[str]:
    """Every table and view (any schema but pg_catalog/information_schema) with a row whose
    text contains *needle*: a grep over a dump of the database."""
    found = []
    relations = sql.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'v', 'm', 'p')"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    ).fetchall()
    for (name,) in relations:
        row = sql.execute(
            f"SELECT count(*) FROM {name} AS t WHERE strpos(t::text, %s) > 0",
            (needle,),
        ).fetchone()
        if row and row[0]:
            found.append(name)
    return sorted(found)


def test_pii_and_password_sentinels(
    sql: Conn,
    box: Box,
    start_channel: Callable[..., Any],
    approve_required: Any,
    channel_dsn: str,
) -> None:
    approve_required(False)
    pii = f"PII-SENTINEL-{uuid.uuid4().hex}"
    box.deliver(message(f"My account number is {pii}.", subject=f"About {pii}"))
    adapter = start_channel(box.env())
    wait_until(lambda: states(sql, box.user) == ["sent"], timeout=60)

    assert _rows_containing(sql, pii) == ["conveyor.customer_message_body"]
    assert _rows_containing(sql, box.mail.password) == []
    adapter.send_signal(signal.SIGTERM)
    adapter.wait(timeout=60)
    log = channel_log(adapter)
    assert pii not in log
    assert box.mail.password not in log

    report = subprocess.run(
        [sys.executable, "-m", "conveyor", "report"],
        env={**os.environ, "CONVEYOR_DATABASE_URL": channel_dsn, **box.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "customer_message" in report.stdout
    assert box.mail.password not in report.stdout + report.stderr
    assert pii not in report.stdout + report.stderr
