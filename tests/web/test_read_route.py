"""The read route: with CONVEYOR_READ_DATABASE_URL set, the console's pages and /metrics, and
`conveyor metrics`, read through it (a replica would do) while every action still goes to the
primary. The read URL here logs in as a role of its own whose transactions are read-only, like
a standby's: a read that wrote would fail, an action sent to it would fail, and
pg_stat_activity tells which login served what."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql as q
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from helpers import wait_until
from web.support import dead_letter, free_port

PAGES = ["/", "/queues", "/jobs", "/dead-letters", "/components", "/phases", "/metrics"]
ROLE = f"t_console_read_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def read_url(web_dsn: str) -> Iterator[str]:
    secret = uuid.uuid4().hex
    with psycopg.connect(web_dsn, autocommit=True) as admin:
        admin.execute(
            q.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {} IN ROLE conveyor_admin").format(
                q.Identifier(ROLE), q.Literal(secret)
            )
        )
        for grant in ("pg_read_all_stats", "pg_read_all_data"):
            admin.execute(q.SQL("GRANT {} TO {}").format(q.Identifier(grant), q.Identifier(ROLE)))
        admin.execute(
            q.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(q.Identifier(ROLE))
        )
    params = {k: str(v) for k, v in conninfo_to_dict(web_dsn).items() if v is not None}
    params.update(user=ROLE, password=secret)
    try:
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(web_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (ROLE,),
            )
            wait_until(lambda: not logins_of(admin, ROLE), timeout=30)
            admin.execute(q.SQL("DROP ROLE {}").format(q.Identifier(ROLE)))


@pytest.fixture(scope="module")
def console_env(read_url: str) -> dict[str, str]:
    return {"CONVEYOR_READ_DATABASE_URL": read_url}


def logins_of(sql: psycopg.Connection[Any], role: str) -> int:
    """How many sessions *role* has open."""
    rows = sql.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (role,))
    return len(rows.fetchall())


def logins(sql: psycopg.Connection[Any], application_name: str) -> set[str]:
    rows = sql.execute(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    )
    return {str(r[0]) for r in rows}


def test_pages_read_through_the_read_route_and_actions_go_to_the_primary(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_letter(sql, queue)
    alice = login("alice")
    for path in PAGES:
        answer = alice.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    assert queue in alice.get("/dead-letters").text
    assert logins(sql, "conveyor-web-read") == {ROLE}
    assert ROLE not in logins(sql, "conveyor-web")

    answer = alice.post("/queues/pause", data={"csrf": alice.csrf, "queue": queue})  # type: ignore[attr-defined]
    assert answer.status_code == 303
    paused = sql.execute("SELECT value FROM dot_config WHERE key = 'queue.paused_queues'")
    assert queue in paused.fetchone()[0]  # type: ignore[index]
    sql.execute("SELECT fn_job_queue_resume(queue => %s, resumed_by => 'tests')", (queue,))


def test_conveyor_metrics_reads_through_the_read_route(
    web_dsn: str, read_url: str, sql: psycopg.Connection[Any], queue: str, tmp_path: Path
) -> None:
    dead_letter(sql, queue)
    port = free_port()
    log_path = tmp_path / "metrics.log"
    env = {**os.environ, "CONVEYOR_DATABASE_URL": web_dsn, "CONVEYOR_READ_DATABASE_URL": read_url}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "metrics", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def scrape() -> str | None:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                return None

        text = wait_until(scrape, timeout=60)
        assert f'conveyor_dead_letters_open{{queue="{queue}"}} 1.0' in text
        assert logins(sql, "conveyor-metrics") == {ROLE}
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
