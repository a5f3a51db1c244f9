"""Test helpers for conveyor's users: a real database with the phases applied, `drain` to run the
ready jobs inline, and assertions on what was enqueued. No stand-in queue: every job goes through
the same fn_job_* calls a worker makes. Enable the fixtures with ``-p conveyor.testing`` or
``pytest_plugins = ["conveyor.testing"]`` in the top conftest.py.

Fixtures: ``conveyor_dsn`` (a fresh database per test, cloned from a template with the phases of
the ``conveyor_phases`` ini option applied and the job substrate on) and ``conveyor_db`` (an
autocommit connection to it). The server is ``CONVEYOR_TEST_DATABASE_URL`` (a role that may
create databases), else an embedded PostgreSQL started for the session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conveyor import jobs
from conveyor.calls import Statement, acall, call
from conveyor.errors import GateFailed
from conveyor.handlers import Fail, Handler, JobContext, Registry, Retry, Snooze
from conveyor.jobs import ClaimedJob
from conveyor.outcomes import error_text
from conveyor.phases import runner
from conveyor.types import JsonObject

WORKER = "conveyor.testing"
DEFAULT_PHASES = "0 1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt `drain` ran: the job as claimed, how it ended, its result or error."""

    job: ClaimedJob
    outcome: str  # succeeded | retried | dead_lettered | snoozed
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Drained:
    """What `drain` did, attempt by attempt, in the order it ran them."""

    attempts: tuple[Attempt, ...]

    def count(self, outcome: str) -> int:
        """How many attempts ended with *outcome*."""
        return sum(1 for attempt in self.attempts if attempt.outcome == outcome)

    @property
    def succeeded(self) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.outcome == "succeeded"]

    @property
    def failed(self) -> list[Attempt]:
        """Attempts that raised: retried or dead-lettered."""
        return [a for a in self.attempts if a.outcome in ("retried", "dead_lettered")]

    def __len__(self) -> int:
        return len(self.attempts)


def drain(
    conn: psycopg.Connection[Any],
    registry: Registry,
    *,
    queues: Sequence[str] | None = None,
    limit: int = 1000,
) -> Drained:
    """Run every ready job of *registry*'s kinds on *conn*, one at a time, until none is ready.

    *queues* None means every queue that holds ready jobs of those kinds.

    Each job is claimed with fn_job_claim and ends through fn_job_complete / fail_transient /
    fail_permanent / snooze, exactly as a worker ends it; a handler's writes on ``context.conn``
    (transactional handlers) roll back when it raises. A retry that the database schedules later
    is not ready, so it is not run again (set ``queue.retry.base_seconds`` to 0 to retry at once).
    Async handlers run on a fresh event loop (use `adrain` inside a running one, and for async
    transactional handlers); handler timeouts are not enforced. TypeError for a transactional
    handler that needs the other kind of connection (before anything is claimed).
    Raises RuntimeError after *limit* attempts (a handler that snoozes or retries at once loops).
    """
    _check_connections(registry, asynchronous=False)
    attempts: list[Attempt] = []
    while True:
        ready = [row[0] for row in conn.execute(_READY_SQL, _ready(registry, queues)).fetchall()]
        if ready:
            _check_limit(attempts, limit)
        claimed = (
            jobs.claim(conn, WORKER, queues=ready, kinds=registry.kinds, batch=1) if ready else []
        )
        if not claimed:
            return Drained(tuple(attempts))
        job = claimed[0]
        handler = _handler(registry, job)
        context = JobContext(job=job, worker=WORKER, conn=conn if handler.transactional else None)
        try:
            with conn.transaction():
                result = _run_sync(handler, context)
                call(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
            attempts.append(Attempt(job, "succeeded", result=result))
        except Exception as error:
            attempt, statement = _failure(job, error)
            attempts.append(_failed(attempt, call(conn, *statement)))


async def adrain(
    conn: psycopg.AsyncConnection[Any],
    registry: Registry,
    *,
    queues: Sequence[str] | None = None,
    limit: int = 1000,
) -> Drained:
    """`drain` on an AsyncConnection, for async tests; sync handlers run in a thread."""
    _check_connections(registry, asynchronous=True)
    attempts: list[Attempt] = []
    while True:
        cursor = await conn.execute(_READY_SQL, _ready(registry, queues))
        ready = [row[0] for row in await cursor.fetchall()]
        if ready:
            _check_limit(attempts, limit)
        statement = jobs.claim_statement(WORKER, queues=ready, kinds=registry.kinds, batch=1)
        claimed = jobs.parse_claim(await acall(conn, *statement)) if ready else []
        if not claimed:
            return Drained(tuple(attempts))
        job = claimed[0]
        handler = _handler(registry, job)
        context = JobContext(job=job, worker=WORKER, conn=conn if handler.transactional else None)
        try:
            async with conn.transaction():
                if handler.is_async:
                    result = await handler.func(context)
                else:
                    result = await asyncio.to_thread(handler.func, context)
                await acall(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
            attempts.append(Attempt(job, "succeeded", result=result))
        except Exception as error:
            attempt, statement = _failure(job, error)
            attempts.append(_failed(attempt, await acall(conn, *statement)))


# The queues holding ready jobs of the registry's kinds right now (of *queues*, if given).
_READY_SQL: LiteralString = """
    SELECT DISTINCT b.queue FROM conveyor.v_job_queue_backlog AS b
     WHERE b.kind = ANY(%s::text[]) AND b.ready_count > 0
       AND (%s::text[] IS NULL OR b.queue = ANY(%s::text[]))
"""


def _ready(registry: Registry, queues: Sequence[str] | None) -> tuple[Any, ...]:
    names = list(queues) if queues is not None else None
    return (registry.kinds, names, names)


def _run_sync(handler: Handler, context: JobContext) -> Any:
    if not handler.is_async:
        return handler.func(context)
    return asyncio.run(handler.func(context))


def _check_connections(registry: Registry, asynchronous: bool) -> None:
    """A transactional handler gets the drain's connection: it must be the kind it expects."""
    for kind in registry.kinds:
        handler = registry.get(kind)
        if handler is None or not handler.transactional or handler.is_async == asynchronous:
            continue
        if handler.is_async:
            need, fix = "an AsyncConnection", "`await conveyor.testing.adrain(aconn, registry)`"
        else:
            need, fix = "a sync Connection", "`conveyor.testing.drain(conn, registry)`"
        raise TypeError(
            f"handler {kind!r} is transactional and {'async' if handler.is_async else 'sync'}, "
            f"so it needs {need}: drain its jobs with {fix}"
        )


def _handler(registry: Registry, job: ClaimedJob) -> Handler:
    handler = registry.get(job.kind)
    assert handler is not None, f"claimed job {job.job_id} of kind {job.kind!r} has no handler"
    return handler


def _check_limit(attempts: list[Attempt], limit: int) -> None:
    if len(attempts) >= limit:
        raise RuntimeError(
            f"drain ran {limit} attempts and jobs are still ready: a handler that snoozes or "
            "retries with no delay runs forever; give it a delay or pass a larger limit="
        )


def _failure(job: ClaimedJob, error: Exception) -> tuple[Attempt, Statement]:
    """How the worker ends an attempt that raised *error*: the attempt and its fn_job_* call."""
    if isinstance(error, Snooze):
        statement = jobs.snooze_statement(job.job_id, job.lease_token, error.seconds)
        return Attempt(job, "snoozed"), statement
    if isinstance(error, Fail):
        text = error_text(error)
        statement = jobs.fail_permanent_statement(job.job_id, job.lease_token, text)
        return Attempt(job, "dead_lettered", error=text), statement
    retry_in = error.in_seconds if isinstance(error, Retry) else None
    text = str(error) if isinstance(error, Retry) else error_text(error)
    statement = jobs.fail_transient_statement(job.job_id, job.lease_token, text, retry_in)
    return Attempt(job, "retried", error=text), statement


def _failed(attempt: Attempt, answer: JsonObject) -> Attempt:
    """*attempt* as the answer ended it: fn_job_fail_transient may have spent the last attempt."""
    if answer.get("status") == "dead_letter":
        return Attempt(attempt.job, "dead_lettered", error=attempt.error)
    return attempt


# ---------------------------------------------------------------------------- assertions


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    """A job waiting to run (status queued or waiting), as the database holds it."""

    job_id: int
    queue: str
    kind: str
    payload: JsonObject
    priority: int
    attempts: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> EnqueuedJob:
        return cls(int(row[0]), str(row[1]), str(row[2]), dict(row[3]), int(row[4]), int(row[5]))


_ENQUEUED_SQL: LiteralString = """
    SELECT jq.id, jq.queue, jq.kind, jq.payload, jq.priority, jq.attempts
      FROM conveyor.job_queue AS jq
     WHERE jq.status IN ('queued', 'waiting')
       AND (%(kind)s::text IS NULL OR jq.kind = %(kind)s)
       AND (%(queue)s::text IS NULL OR jq.queue = %(queue)s)
       AND (%(payload)s::jsonb IS NULL OR jq.payload @> %(payload)s)
     ORDER BY jq.id
"""


def enqueued(
    conn: psycopg.Connection[Any],
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: JsonObject | None = None,
) -> list[EnqueuedJob]:
    """Jobs waiting to run, oldest first; *payload* matches jobs whose payload contains it."""
    params = {"kind": kind, "queue": queue, "payload": Jsonb(payload) if payload else None}
    return [EnqueuedJob.from_row(row) for row in conn.execute(_ENQUEUED_SQL, params).fetchall()]


def assert_enqueued(
    conn: psycopg.Connection[Any],
    kind: str,
    *,
    queue: str | None = None,
    payload: JsonObject | None = None,
    count: int = 1,
) -> list[EnqueuedJob]:
    """Assert exactly *count* waiting jobs of *kind* (and *queue*, *payload* ⊆); return them."""
    found = enqueued(conn, kind, queue=queue, payload=payload)
    if len(found) != count:
        waiting = [(job.kind, job.queue, job.payload) for job in enqueued(conn)]
        wanted = f"kind {kind!r}" + (f", queue {queue!r}" if queue else "")
        wanted += f", payload ⊇ {payload!r}" if payload else ""
        raise AssertionError(
            f"expected {count} enqueued job(s) of {wanted}, found {len(found)}; "
            f"waiting jobs (kind, queue, payload): {waiting}"
        )
    return found


def assert_not_enqueued(
    conn: psycopg.Connection[Any],
    kind: str,
    *,
    queue: str | None = None,
    payload: JsonObject | None = None,
) -> None:
    """Assert no waiting job of *kind* (and *queue*, *payload* ⊆)."""
    assert_enqueued(conn, kind, queue=queue, payload=payload, count=0)


# ---------------------------------------------------------------------------- fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "conveyor_phases",
        "conveyor phases applied to the test databases, in order (default: 0 1)",
        default=DEFAULT_PHASES,
    )


def _with_database(dsn: str, name: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = name
    return make_conninfo("", **params)


@pytest.fixture(scope="session")
def conveyor_server_dsn() -> Iterator[str]:
    """URL of a role that may create databases: CONVEYOR_TEST_DATABASE_URL, else embedded."""
    url = os.environ.get("CONVEYOR_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from conveyor.embedded import EmbeddedServer

    # Not under pytest's own temporary directory (mode 0700): as root the embedded server runs
    # as conveyor-pg, which must be able to enter the data directory's parent.
    base = Path(tempfile.mkdtemp(prefix="conveyor-testing-"))
    base.chmod(0o755)
    server = EmbeddedServer(base / "pgdata")
    server.start()
    try:
        yield str(server.dsn)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def conveyor_template(conveyor_server_dsn: str, pytestconfig: pytest.Config) -> Iterator[str]:
    """Name of a template database with the configured phases applied and the substrate on."""
    phases = [int(word) for word in str(pytestconfig.getini("conveyor_phases")).split()]
    name = f"conveyor_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conveyor_server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(_with_database(conveyor_server_dsn, name), autocommit=True) as conn:
            for number in phases:
                runner.ratify(conn, number, WORKER, "test database")
                result = runner.apply(conn, number, WORKER)
                if result.gate is not None and not result.gate.passed:
                    raise GateFailed(number, result.gate.failures)
            conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
        yield name
    finally:
        _drop(conveyor_server_dsn, name)


@pytest.fixture
def conveyor_dsn(conveyor_server_dsn: str, conveyor_template: str) -> Iterator[str]:
    """URL of this test's own database, cloned from the template (dropped afterwards)."""
    name = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conveyor_server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(conveyor_template)
            )
        )
    try:
        yield _with_database(conveyor_server_dsn, name)
    finally:
        _drop(conveyor_server_dsn, name)


@pytest.fixture
def conveyor_db(conveyor_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(conveyor_dsn, autocommit=True) as conn:
        yield conn


def _drop(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
