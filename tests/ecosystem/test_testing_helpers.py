"""conveyor.testing as a user meets it: a user's own test file, run by pytest in a subprocess with
the plugin enabled, drains its handlers against a real database and asserts on enqueued jobs;
and drain's outcomes one by one, in process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Fail, JobContext, Registry, Retry, Snooze, aio, jobs
from conveyor.testing import adrain, assert_enqueued, drain, enqueued
from ecosystem.support import USER_APP, USER_TESTS
from helpers import scalar, unique


def test_a_users_test_file_drains_its_handlers_with_the_plugin(
    tmp_path: Path, pg_admin_dsn: str
) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(USER_APP))
    (tmp_path / "test_app.py").write_text(textwrap.dedent(USER_TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    env = {**os.environ, "CONVEYOR_TEST_DATABASE_URL": pg_admin_dsn, "PYTHONPATH": str(tmp_path)}
    for name in ("CONVEYOR_DATABASE_URL", "DATABASE_URL"):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conveyor.testing", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    output = result.stdout + result.stderr
    assert "1 failed, 4 passed" in output, output
    assert "test_a_wrong_expectation_fails_with_what_is_enqueued" in output
    assert "expected 2 enqueued job(s) of kind 'mail.welcome', found 1" in output, output


# ------------------------------------------------------------------ drain's outcomes, in process


@pytest.fixture
def conn(substrate_dsn: str) -> Any:
    with psycopg.connect(substrate_dsn, autocommit=True) as opened:
        yield opened


def test_drain_ends_each_attempt_the_way_the_worker_does(conn: psycopg.Connection[Any]) -> None:
    registry, kind = Registry(), unique("k")
    seen: list[str] = []

    @registry.handler(f"{kind}.ok")
    def ok(context: JobContext) -> Any:
        return context.payload["n"] * 2

    @registry.handler(f"{kind}.fail")
    def fail(context: JobContext) -> None:
        raise Fail("bad payload")

    @registry.handler(f"{kind}.snooze")
    def snooze(context: JobContext) -> None:
        seen.append("snooze")
        raise Snooze(3600)

    @registry.handler(f"{kind}.flaky")
    async def flaky(context: JobContext) -> None:
        raise Retry("later", in_seconds=3600)

    for suffix in ("ok", "fail", "snooze", "flaky"):
        jobs.enqueue(conn, f"{kind}.{suffix}", {"n": 21})

    drained = drain(conn, registry)

    outcomes = {a.job.kind.removeprefix(f"{kind}."): a.outcome for a in drained.attempts}
    assert outcomes == {
        "ok": "succeeded",
        "fail": "dead_lettered",
        "snooze": "snoozed",
        "flaky": "retried",
    }
    assert drained.succeeded[0].result == 42 and seen == ["snooze"]
    assert [a.error for a in drained.failed] == ["Fail: bad payload", "later"]
    assert [job.kind for job in enqueued(conn, queue="default") if job.kind.startswith(kind)] == [
        f"{kind}.snooze",
        f"{kind}.flaky",
    ]


def test_a_transactional_handler_that_raises_leaves_none_of_its_writes(
    conn: psycopg.Connection[Any],
) -> None:
    registry, kind, table = Registry(), unique("k"), unique("effects_")
    conn.execute(f"CREATE TABLE public.{table} (n integer)")

    @registry.handler(kind, transactional=True)
    def write_then_fail(context: JobContext) -> None:
        context.conn.execute(f"INSERT INTO public.{table} VALUES (1)")
        raise Fail("after writing")

    jobs.enqueue(conn, kind)
    drained = drain(conn, registry)

    assert drained.count("dead_lettered") == 1
    assert scalar(conn, f"SELECT count(*) FROM public.{table}") == 0


def test_drain_stops_a_handler_that_snoozes_forever(conn: psycopg.Connection[Any]) -> None:
    registry, kind = Registry(), unique("k")

    @registry.handler(kind)
    def again(context: JobContext) -> None:
        raise Snooze(0)

    jobs.enqueue(conn, kind)
    with pytest.raises(RuntimeError, match="drain ran 5 attempts"):
        drain(conn, registry, limit=5)
    assert_enqueued(conn, kind)


def test_adrain_runs_async_and_sync_handlers_on_an_async_connection(substrate_dsn: str) -> None:
    registry, kind = Registry(), unique("k")

    @registry.handler(f"{kind}.async", transactional=True)
    async def async_handler(context: JobContext) -> Any:
        cursor = await context.conn.execute("SELECT 40 + 2")
        return (await cursor.fetchone())[0]

    @registry.handler(f"{kind}.sync")
    def sync_handler(context: JobContext) -> Any:
        return "from a thread"

    async def scenario() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(substrate_dsn, autocommit=True) as aconn:
            await aio.enqueue(aconn, f"{kind}.async")
            await aio.enqueue(aconn, f"{kind}.sync")
            drained = await adrain(aconn, registry)
            return sorted(str(a.result) for a in drained.succeeded)

    assert asyncio.run(scenario()) == ["42", "from a thread"]


def test_drain_refuses_a_transactional_handler_of_the_other_kind_before_claiming(
    conn: psycopg.Connection[Any],
) -> None:
    registry, kind = Registry(), unique("k")

    @registry.handler(kind, transactional=True)
    async def needs_async(context: JobContext) -> None:
        return None

    jobs.enqueue(conn, kind)
    with pytest.raises(TypeError, match=r"needs an AsyncConnection: drain its jobs with `await"):
        drain(conn, registry)
    assert_enqueued(conn, kind)  # nothing was claimed
