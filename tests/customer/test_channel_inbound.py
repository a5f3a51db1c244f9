"""Inbound through a real `conveyor channel run` (RELIABILITY #47): a restart mid-poll (the cursor
never advanced) and a changed UIDVALIDITY (the folder recreated) create no duplicate; odd mail
(oversized, deeply nested, a malformed part, an unknown charset) is stored with its problems and
never crash-loops the adapter; an unreachable IMAP server is one log line and a backoff."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from typing import Any

import imap_tools
import psycopg

from customer.channelsupport import Box, channel_log, message, message_ids, states
from helpers import wait_until

Conn = psycopg.Connection[Any]


def _problems(sql: Conn, account: str) -> list[list[str]]:
    rows = sql.execute(
        "SELECT problems FROM conveyor.customer_message WHERE account = %s ORDER BY id", (account,)
    ).fetchall()
    return [list(r[0] or []) for r in rows]


def _stop(adapter: Any) -> None:
    adapter.send_signal(signal.SIGTERM)
    adapter.wait(timeout=60)


def test_restart_mid_poll_and_a_changed_uidvalidity_create_no_duplicate(
    sql: Conn, box: Box, start_channel: Callable[..., Any]
) -> None:
    box.mailboxes = "Support"
    with imap_tools.MailBoxUnencrypted("127.0.0.1", box.mail.imap_port).login(
        box.user, box.mail.password, initial_folder=None
    ) as imap:
        imap.folder.create("Support")
    mails = [message(f"question {n}") for n in range(3)]
    for raw in mails:
        box.deliver(raw)
    adapter = start_channel(box.env())
    wait_until(lambda: len(message_ids(sql, box.user)) == 3, timeout=60)
    _stop(adapter)
    first = message_ids(sql, box.user)

    # a crash before the cursor advanced: the next poll sees every UID again
    sql.execute("UPDATE conveyor.customer_mailbox SET last_uid = 0 WHERE account = %s", (box.user,))
    # and the folder recreated: a new UIDVALIDITY, the same messages under new UIDs
    with imap_tools.MailBoxUnencrypted("127.0.0.1", box.mail.imap_port).login(
        box.user, box.mail.password, initial_folder=None
    ) as imap:
        before = imap.folder.status("Support")["UIDVALIDITY"]
        imap.folder.delete("Support")
        imap.folder.create("Support")
        assert imap.folder.status("Support")["UIDVALIDITY"] != before
    for raw in mails:
        box.deliver(raw)
    box.deliver(message("a new one"))
    adapter = start_channel(box.env())

    wait_until(lambda: len(message_ids(sql, box.user)) == 4, timeout=60)
    wait_until(
        lambda: (
            sql.execute(
                "SELECT count(*) FROM conveyor.event_outbox"
                " WHERE event_type = 'customer.mailbox_uidvalidity_changed'"
                "   AND payload->>'account' = %s",
                (box.user,),
            ).fetchone()
            == (1,)
        ),
        timeout=30,
    )
    assert message_ids(sql, box.user)[:3] == first
    _stop(adapter)
    assert len(message_ids(sql, box.user)) == 4


def _nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in range(depth):
        body = (
            f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n".encode()
            + body
            + f"\r\n--b{level}--\r\n".encode()
        )
    return (
        f"From: c@example.org\r\nTo: s@localhost\r\nSubject: nested\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\nMIME-Version: 1.0\r\n"
    ).encode() + body


def test_odd_mail_is_stored_with_its_problems(
    sql: Conn, box: Box, start_channel: Callable[..., Any]
) -> None:
    head = (
        "From: c@example.org\r\nTo: s@localhost\r\nMessage-ID: <{}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    box.deliver(
        head.format(uuid.uuid4().hex).encode()
        + b"Subject: big\r\nContent-Type: text/plain\r\n\r\n"
        + b"x" * 200_000
    )
    box.deliver(_nested(60))
    box.deliver(
        head.format(uuid.uuid4().hex).encode()
        + b"Subject: charset\r\nContent-Type: text/plain; charset=x-unheard-of\r\n\r\nhi \xff\r\n"
    )
    box.deliver(
        head.format(uuid.uuid4().hex).encode()
        + b"Subject: broken\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n"
    )
    adapter = start_channel(box.env(), "--max-bytes", "65536")

    wait_until(lambda: len(message_ids(sql, box.user)) == 4, timeout=60)
    problems = _problems(sql, box.user)
    assert "oversized" in problems[0]
    assert "nesting_too_deep" in problems[1]
    assert "unknown_charset:x-unheard-of" in problems[2]
    assert "malformed_part" in problems[3]
    log = channel_log(adapter)
    assert "Traceback" not in log
    wait_until(lambda: all(s != "received" for s in states(sql, box.user)), timeout=60)


def test_an_unreachable_imap_server_is_a_log_line_and_a_backoff(
    sql: Conn, box: Box, start_channel: Callable[..., Any]
) -> None:
    env = box.env()
    env["CONVEYOR_CHANNEL_IMAP_URL"] = f"imap://{box.user}@127.0.0.1:1"
    adapter = start_channel(env)
    wait_until(lambda: "retrying in 2 s" in channel_log(adapter), timeout=60)
    assert adapter.poll() is None  # still running
    log = channel_log(adapter)
    assert "Connection refused" in log
    assert "Traceback" not in log
    assert box.mail.password not in log
