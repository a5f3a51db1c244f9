"""Shared by the ecosystem tests: one face over the sync and the asyncio client, and a user's
small app with its own test file (run by pytest with the conveyor.testing plugin)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

from conveyor import aio
from conveyor import jobs as sync_jobs
from helpers import SEARCH_PATH_OPTION


class Client:
    """One face over both clients: ``client.enqueue(kind, …)`` calls ``jobs.enqueue(conn, …)``
    or runs ``aio.enqueue(aconn, …)`` on one event loop, so a test body proves both."""

    def __init__(self, mode: str, dsn: str) -> None:
        self.mode = mode
        self.sync = psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION)
        self._runner = asyncio.Runner()
        self.aconn: psycopg.AsyncConnection[Any] | None = None
        if mode == "async":
            self.aconn = self._runner.run(
                psycopg.AsyncConnection.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION)
            )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.aconn is None:
            function = getattr(sync_jobs, name)
            return lambda *args, **kwargs: function(self.sync, *args, **kwargs)
        coroutine = getattr(aio, name)
        aconn = self.aconn
        return lambda *args, **kwargs: self._runner.run(coroutine(aconn, *args, **kwargs))

    def execute(self, query: Any, params: Any = None) -> None:
        """Run *query* on the connection the client uses (to change its transaction's state)."""
        if self.aconn is None:
            self.sync.execute(query, params)
        else:
            self._runner.run(self.aconn.execute(query, params))

    def set_autocommit(self, value: bool) -> None:
        if self.aconn is None:
            self.sync.autocommit = value
        else:
            self._runner.run(self.aconn.set_autocommit(value))

    def rollback(self) -> None:
        if self.aconn is None:
            self.sync.rollback()
        else:
            self._runner.run(self.aconn.rollback())

    def close(self) -> None:
        if self.aconn is not None:
            self._runner.run(self.aconn.close())
        self._runner.close()
        self.sync.close()


USER_APP = '''
    """A user's app: signing up enqueues a welcome mail, in the same transaction."""
    from conveyor import Registry, Retry, enqueue

    registry = Registry()


    def sign_up(conn, email):
        with conn.transaction():
            conn.execute("INSERT INTO users (email) VALUES (%s)", (email,))
            enqueue(conn, "mail.welcome", {"email": email}, queue="mail")


    @registry.handler("mail.welcome", transactional=True)
    def send_welcome(context):
        email = context.payload["email"]
        if email.endswith("@bounce.test"):
            raise Retry("mailbox unavailable")
        context.conn.execute("INSERT INTO sent (email) VALUES (%s)", (email,))
        return {"sent_to": email}
'''

USER_TESTS = """
    import pytest
    from conveyor.testing import assert_enqueued, assert_not_enqueued, drain

    from app import registry, sign_up


    @pytest.fixture
    def db(conveyor_db):
        conveyor_db.execute("CREATE TABLE users (email text PRIMARY KEY)")
        conveyor_db.execute("CREATE TABLE sent (email text)")
        return conveyor_db


    def test_sign_up_enqueues_one_welcome_mail(db):
        sign_up(db, "ada@example.test")
        [job] = assert_enqueued(db, "mail.welcome", payload={"email": "ada@example.test"})
        assert job.attempts == 0


    def test_draining_sends_the_mail_and_leaves_nothing_enqueued(db):
        sign_up(db, "ada@example.test")
        drained = drain(db, registry)
        assert [a.result for a in drained.succeeded] == [{"sent_to": "ada@example.test"}]
        assert db.execute("SELECT email FROM sent").fetchall() == [("ada@example.test",)]
        assert_not_enqueued(db, "mail.welcome")


    def test_a_bounce_is_retried_until_it_is_dead_lettered(db):
        db.execute("SELECT conveyor.fn_config_set('queue.retry.base_seconds', '0')")
        sign_up(db, "bob@bounce.test")
        drained = drain(db, registry)
        assert drained.count("retried") >= 1 and drained.count("dead_lettered") == 1
        assert db.execute("SELECT count(*) FROM sent").fetchone() == (0,)


    def test_each_test_gets_its_own_database(db):
        assert_not_enqueued(db, "mail.welcome")


    def test_a_wrong_expectation_fails_with_what_is_enqueued(db):
        sign_up(db, "ada@example.test")
        assert_enqueued(db, "mail.welcome", count=2)
"""
