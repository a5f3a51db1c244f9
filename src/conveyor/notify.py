"""LISTEN for the NOTIFY bridge (phase 3): a wake-up hint for the claim loop, never the source of
truth. Polling keeps running underneath, so a lost notification only costs latency. Workers take
turns as the one listener of the job channel, so a notification wakes one of them, not all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import zlib
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

CHANNEL = "conveyor_jobs"  # job inserts (phase 3 bridge): wakes workers
EVENTS_CHANNEL = "conveyor_events"  # outbox emits (phase 4): wakes the orchestrator's dispatch
# pg_advisory_lock(WAITER_LOCK, crc32 of the channel): held by the listener whose turn it is.
WAITER_LOCK = 0x636F6E76  # "conv"
WAITERS_SQL = """
    SELECT count(*) FROM pg_locks AS l
     WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
       AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       AND l.classid = %s::oid AND l.objid = %s::oid
"""


class Listener:
    """Keeps one LISTEN connection alive and calls *wake* on every notification.

    At start it notifies itself on a channel of its own (no other listener wakes): a connection
    pooler in transaction mode swallows LISTEN, and then the listener says so once and stops
    (the worker keeps polling). A dropped connection is re-established with capped backoff;
    missed notifications are covered by polling.

    With *take_turns* (the workers' job channel) the listeners of a channel in one database take
    turns: only the one holding the channel's advisory lock LISTENs, the others queue for the
    lock. After a notification it keeps listening while nobody queues; otherwise it hands the
    turn on (UNLISTEN, unlock) and queues again. The next listener wakes its worker once when
    its turn starts (a notification may have come in between): a notification costs O(1)
    claims, not one per idle worker.
    """

    def __init__(
        self,
        url: str,
        name: str,
        wake: Callable[[], None],
        channel: str = CHANNEL,
        *,
        take_turns: bool = False,
    ) -> None:
        self.url = url
        self.name = name
        self.wake = wake
        self.channel = channel
        self.take_turns = take_turns
        self.connected = False
        self.notifications = 0
        self.lock_key = (WAITER_LOCK, zlib.crc32(channel.encode()) & 0x7FFFFFFF)

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
                    # stopping closes the connection: a wait for the turn (a query) ends at once
                    closer = asyncio.create_task(self._close_when(stopping, conn))
                    try:
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
                        if self.take_turns:
                            await self._take_turns(conn, stopping)
                        else:
                            await conn.execute(self._listen("LISTEN"))
                            await self._receive(conn, stopping)
                    finally:
                        closer.cancel()
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as error:
                if stopping.is_set():
                    return
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

    @staticmethod
    async def _close_when(stopping: asyncio.Event, conn: psycopg.AsyncConnection[Any]) -> None:
        await stopping.wait()
        await conn.close()

    def _listen(self, verb: LiteralString, channel: str | None = None) -> sql.Composed:
        return sql.SQL(verb + " {}").format(sql.Identifier(channel or self.channel))

    async def _self_probe(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        probe = f"{self.channel}_probe_{uuid.uuid4().hex[:12]}"
        await conn.execute(self._listen("LISTEN", probe))
        await conn.execute("SELECT pg_notify(%s, 'probe')", (probe,))
        received = 0
        with contextlib.suppress(TimeoutError):
            async for _ in conn.notifies(timeout=2.0, stop_after=1):
                received += 1  # no query in here: the generator holds the connection's lock
        if received:
            await conn.execute(self._listen("UNLISTEN", probe))
        return received > 0

    async def _receive(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            async for _ in conn.notifies(timeout=1.0):
                self.notifications += 1
                self.wake()
            # timeout: loop to check `stopping`; a broken connection raises OperationalError
            await conn.execute("SELECT 1")

    async def _take_turns(
        self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event
    ) -> None:
        await conn.execute("SET lock_timeout = '1s'")  # queue in slices, to notice `stopping`
        while not stopping.is_set():
            try:
                await conn.execute("SELECT pg_advisory_lock(%s, %s)", self.lock_key)
            except psycopg.errors.LockNotAvailable:
                continue
            await conn.execute(self._listen("LISTEN"))
            self.wake()  # the turn starts: look for what came while nobody listened
            while await self._notified(conn, stopping):
                cursor = await conn.execute(WAITERS_SQL, self.lock_key)
                row = await cursor.fetchone()
                if row is not None and row[0] > 0:
                    break
            await conn.execute(self._listen("UNLISTEN"))
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", self.lock_key)

    async def _notified(self, conn: psycopg.AsyncConnection[Any], stopping: asyncio.Event) -> bool:
        """Wait for one notification (and wake the worker); False once stopping."""
        while not stopping.is_set():
            received = 0
            async for _ in conn.notifies(timeout=1.0, stop_after=1):
                received += 1
            if received:
                self.notifications += received
                self.wake()
                return True
            await conn.execute("SELECT 1")  # a broken connection raises OperationalError
        return False
