"""At most one SMTP transaction per approved draft (RELIABILITY #45, #46), through real
`conveyor channel run` processes and aiosmtpd sinks that stall or drop after DATA."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import psycopg

from customer.channelsupport import Box, channel_log, message, message_ids, states
from helpers import wait_until

Conn = psycopg.Connection[Any]


def _send_rows(sql: Conn, message_id: int) -> list[str]:
    rows = sql.execute(
        "SELECT state FROM conveyor.customer_message_send WHERE message_id = %s ORDER BY id",
        (message_id,),
    ).fetchall()
    return [r[0] for r in rows]


def _send_job_results(sql: Conn, message_id: int) -> list[Any]:
    rows = sql.execute(
        "SELECT status, result FROM conveyor.job_queue WHERE kind = 'customer_message_send'"
        " AND (payload->>'message_id')::bigint = %s ORDER BY id",
        (message_id,),
    ).fetchall()
    return [(r[0], (r[1] or {}).get("outcome")) for r in rows]


def test_kill_9_right_after_data_leaves_sending_then_reconcile_never_a_resend(
    sql: Conn, box: Box, start_channel: Callable[..., Any], approve_required: Any
) -> None:
    approve_required(False)
    stall = box.mail.sink("stall")  # takes DATA, saves it, never answers
    box.deliver(message("Where is my parcel?"))
    adapter = start_channel(box.env(stall))

    wait_until(lambda: len(stall.messages()) == 1, timeout=60)
    [message_id] = message_ids(sql, box.user)
    adapter.send_signal(signal.SIGKILL)
    adapter.wait(timeout=30)
    assert states(sql, box.user) == ["sending"]
    assert _send_rows(sql, message_id) == ["sending"]

    # a new adapter (with a sink that would accept) gets the reaped send job back
    start_channel(box.env())

    def reaped_and_reconciled() -> bool:
        sql.execute("SELECT conveyor.fn_job_lease_reaper()")
        return states(sql, box.user) == ["reconcile"]

    wait_until(reaped_and_reconciled, timeout=90, interval=0.5)
    assert _send_rows(sql, message_id) == ["reconcile"]
    wait_until(lambda: ("succeeded", "reconcile_required") in _send_job_results(sql, message_id))
    assert len(stall.messages()) == 1
    assert box.sink.messages() == [] and box.sink.connections() == []


def test_a_server_that_drops_before_250_sends_to_reconcile_never_resent(
    sql: Conn, box: Box, start_channel: Callable[..., Any], approve_required: Any
) -> None:
    approve_required(False)
    drop = box.mail.sink("drop")
    box.deliver(message("Refund please."))
    adapter = start_channel(box.env(drop))

    wait_until(lambda: states(sql, box.user) == ["reconcile"], timeout=60)
    [message_id] = message_ids(sql, box.user)
    assert _send_rows(sql, message_id) == ["reconcile"]
    wait_until(lambda: _send_job_results(sql, message_id) == [("succeeded", "unknown")])
    assert drop.connections().count("data-drop") == 1
    assert "never resent automatically" in channel_log(adapter)
    assert "Traceback" not in channel_log(adapter)


def test_revoked_after_approval_opens_no_smtp_connection(
    sql: Conn, box: Box, start_channel: Callable[..., Any]
) -> None:
    box.deliver(message("Change my address."))
    adapter = start_channel(box.env())
    wait_until(lambda: states(sql, box.user) == ["awaiting_approval"], timeout=60)
    adapter.send_signal(signal.SIGTERM)
    adapter.wait(timeout=60)

    [message_id] = message_ids(sql, box.user)
    sql.execute(
        "SELECT conveyor.fn_customer_message_approve(message_id => %s, actor => 'tests')",
        (message_id,),
    )
    sql.execute(
        "SELECT conveyor.fn_customer_message_revoke(message_id => %s, actor => 'tests')",
        (message_id,),
    )
    start_channel(box.env())  # claims the released send job, which must refuse

    wait_until(
        lambda: any(
            o in ("approval_void", "not_approved") for _, o in _send_job_results(sql, message_id)
        ),
        timeout=60,
    )
    assert states(sql, box.user) == ["awaiting_approval"]
    assert _send_rows(sql, message_id) == []
    assert box.sink.connections() == []  # not even a connection


def test_an_unreachable_smtp_server_waits_without_dead_letters(
    sql: Conn, box: Box, start_channel: Callable[..., Any], approve_required: Any
) -> None:
    approve_required(False)
    env = box.env()
    env["CONVEYOR_CHANNEL_SMTP_URL"] = f"smtp://{box.user}@127.0.0.1:1"
    box.deliver(message("Is anyone there?"))
    adapter = start_channel(env)

    wait_until(lambda: "SMTP unreachable" in channel_log(adapter), timeout=60)
    [message_id] = message_ids(sql, box.user)
    assert _send_rows(sql, message_id) == ["not_sent"]
    assert states(sql, box.user) == ["approved"]  # sendable again once the server is back
    dead = sql.execute(
        "SELECT count(*) FROM conveyor.job_dead_letter WHERE kind = 'customer_message_send'"
    ).fetchone()
    assert dead == (0,)
    assert adapter.poll() is None
    log = channel_log(adapter)
    assert "Traceback" not in log and box.mail.password not in log
