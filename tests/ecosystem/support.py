"""Shared by the ecosystem tests: one face over the sync and the asyncio client."""

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
