"""LISTEN for the NOTIFY bridge (phase 3): a wake-up hint for the claim loop, never the source of
truth. Polling keeps running underneath, so a lost notification only costs latency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

CHANNEL = "conveyor_jobs"  # job inserts (phase 3 bridge): wakes workers
EVENTS_CHANNEL = "conveyor_events"  # outbox emits (phase 4): wakes the orchestrator's dispatch


class Listener:
    """Keeps one LISTEN connection alive and calls *wake* on every notification.

    At start it notifies itself: a connection pooler in transaction mode swallows LISTEN, and
    then the listener says so once and stops (the worker keeps polling). A dropped connection
    is re-established with capped backoff; missed notifications are covered by polling.
    """

    def __init__(
        self, url: str, name: str, wake: Callable[[], None], channel: str = CHANNEL
    ) -> None:
        self.url = url
        self.name = name
        self.wake = wake
        self.channel = channel
        self.connected = False
        self.notifications = 0

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.5
        probed = False
        while not stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    application_name=f"conveyor-listener:{self.name}"[:63],
                ) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if not probed:
                        if not await self._self_probe(conn):
                            log.warning(
                                "LISTEN/NOTIFY does not reach this connection (a pooler in "
                                "transaction mode?); relying on polling"
                            )
                            return
                        probed = True
                    self.connected = True
                    backoff = 0.5
                    await self._receive(conn, stopping)
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as error:
                log.warning(
                    "listener connection lost (%s); reconnecting in %.1f s",
                    type(error).__name__,
                    backoff,
                )
            finally:
                self.connected = False
            if stopping.is_set():
                return
            self.wake()  # jobs may have arrived while we were deaf: look now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 10.0)

    async def _self_probe(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        await conn.execute("SELECT pg_notify(%s, 'probe')", (self.channel,))
        try:
            async for _ in conn.notifies(timeout=2.0, stop_after=1):
                return True
        except TimeoutError:
            return False
        return False

    async def _receive(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            async for _ in conn.notifies(timeout=1.0):
                self.notifications += 1
                self.wake()
            # timeout: loop to check `stopping`; a broken connection raises OperationalError
            await conn.execute("SELECT 1")
