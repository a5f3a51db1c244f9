"""Channel tests: real Dovecot (IMAP + LMTP) and aiosmtpd sinks on loopback (tests/mailserver.py),
a module database with phases 2, 3, 4, 6 and 7 applied and the substrate, reaper, workflows and
the customer channel switched on, and `conveyor channel run` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.phases import runner
from mailserver import MailServers, Sink, make_account, with_smtp

FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "workflow.mot.enabled",
    "customer.channel.enabled",
)


@pytest.fixture(scope="session")
def mail() -> Iterator[MailServers]:
    servers = MailServers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def sink(mail: MailServers) -> Sink:
    """An accepting SMTP sink shared by a module's tests."""
    return mail.sink()


@pytest.fixture(scope="module")
def channel_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 6, 7):
            runner.ratify(conn, number, "tests")
            result = runner.apply(conn, number, "tests")
            assert result.already_applied or (result.gate is not None and result.gate.passed), (
                result.gate.failures if result.gate else "no gate run"
            )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
    return dsn


@pytest.fixture
def sql(channel_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        channel_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def approve_required(sql: psycopg.Connection[Any]) -> Iterator[Callable[[bool], None]]:
    """Set customer.approve_required for this test (back to true afterwards)."""

    def set_(value: bool) -> None:
        sql.execute(
            "UPDATE conveyor.dot_config SET value = %s::jsonb"
            " WHERE key = 'customer.approve_required'",
            ("true" if value else "false",),
        )

    yield set_
    set_(True)


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


@pytest.fixture
def box(mail: MailServers) -> Box:
    user = mail.add_user(f"u{uuid.uuid4().hex[:10]}")
    return Box(mail, user, mail.sink())


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


@pytest.fixture
def start_channel(
    channel_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor -v channel run --poll-interval 1 …` with *env* (a Box's)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        full = {
            k: v
            for k, v in os.environ.items()
            if k not in {"CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_TEST_DATABASE_URL"}
        }
        full.update({"CONVEYOR_DATABASE_URL": channel_dsn, **env})
        log_path = tmp_path / f"channel{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "-v", "channel", "run",
                 "--poll-interval", "1", "--lease-seconds", "4", "--smtp-timeout", "60", *args],
                env=full,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


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


__all__ = ["make_account", "with_smtp"]  # re-exported for the test modules
