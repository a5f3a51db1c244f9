"""Helpers of the channel tests (tests/customer/test_channel_*.py): a test's own mailbox owner
and sink, a message builder, and reads of the customer_message rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from mailserver import MailServers, Sink


@dataclass
class Box:
    """One test's own mailbox owner (Dovecot user = account name) and SMTP sink."""

    mail: MailServers
    user: str
    sink: Sink
    mailboxes: str = "INBOX"
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, sink: Sink | None = None) -> dict[str, str]:
        return {
            "CONVEYOR_CHANNEL_ACCOUNT": self.user,
            "CONVEYOR_CHANNEL_IMAP_URL": self.mail.imap_url_for(self.user),
            "CONVEYOR_CHANNEL_SMTP_URL": f"smtp://{self.user}@127.0.0.1:{(sink or self.sink).port}",
            "CONVEYOR_CHANNEL_FROM": f"{self.user}@localhost",
            "CONVEYOR_CHANNEL_PASSWORD": self.mail.password,
            "CONVEYOR_CHANNEL_MAILBOXES": self.mailboxes,
            "CONVEYOR_CHANNEL_ALLOW_PLAINTEXT": "loopback",
            **self.extra,
        }

    def deliver(self, raw: bytes) -> None:
        self.mail.deliver(raw, self.mailboxes.split(",")[0], user=self.user)


def message(
    body: str,
    *,
    subject: str = "Question about my invoice",
    message_id: str | None = None,
    sender: str = "customer@example.org",
    to: str = "support@localhost",
) -> bytes:
    """A plain RFC 5322 message."""
    message_id = message_id or f"<{uuid.uuid4().hex}@example.org>"
    return (
        f"From: A Customer <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def channel_log(process: Any) -> str:
    return Path(process.log_path).read_text(errors="replace")


def states(sql: psycopg.Connection[Any], account: str) -> list[str]:
    rows = sql.execute(
        "SELECT state FROM conveyor.customer_message WHERE account = %s ORDER BY id", (account,)
    ).fetchall()
    return [r[0] for r in rows]


def message_ids(sql: psycopg.Connection[Any], account: str) -> list[int]:
    rows = sql.execute(
        "SELECT id FROM conveyor.customer_message WHERE account = %s ORDER BY id", (account,)
    ).fetchall()
    return [int(r[0]) for r in rows]
