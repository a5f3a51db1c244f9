"""Channel tests: real Dovecot (IMAP + LMTP) and aiosmtpd sinks on loopback (tests/mailserver.py),
a module database with phases 2, 3, 4, 6 and 7 applied and the substrate, reaper, workflows and
the customer channel switched on, and `conveyor channel run` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.phases import runner
from customer.channelsupport import Box
from mailserver import MailServers, Sink

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


@pytest.fixture
def box(mail: MailServers) -> Box:
    user = mail.add_user(f"u{uuid.uuid4().hex[:10]}")
    return Box(mail, user, mail.sink())


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
