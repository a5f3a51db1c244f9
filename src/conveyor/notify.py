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

from conveyor import db
from conveyor.settings import redact

log = logging.getLogger(__name__)

PROBE_SECONDS = 2.0  # how long the self-probe waits for its own notification

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

    It LISTENs on CONVEYOR_DIRECT_DATABASE_URL when set, else on *url*. At start it probes
    (`probe_connection`, on a channel of its own, so no other listener wakes): through a pooler in
    transaction mode LISTEN cannot work, and then the listener says so once and stops (``mode``
    "polling"; the worker keeps polling). A dropped connection is re-established with capped
    backoff; missed notifications are covered by polling.

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
        self.mode = "starting"  # then "listening", or "polling" when LISTEN cannot work here
        self.lock_key = (WAITER_LOCK, zlib.crc32(channel.encode()) & 0x7FFFFFFF)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.5
        probed = False
        url = db.listen_url(self.url)
        while not stopping.is_set():
            try:
                async with await db.connect_async(
                    url, application_name=f"conveyor-listener:{self.name}"[:63]
                ) as conn:
                    # stopping closes the connection: a wait for the turn (a query) ends at once
                    closer = asyncio.create_task(self._close_when(stopping, conn))
                    try:
                        if not probed:
                            problem = await probe_connection(conn, url)
                            if problem is not None:
                                self.mode = "polling"
                                log.warning("%s; relying on polling", problem)
                                return
                            probed = True
                        if self.mode != "listening":
                            log.info("%s listens on %s at %s", self.name, self.channel, redact(url))
                        self.mode = "listening"
                        self.connected = True
                        backoff = 0.5
                        if self.take_turns:
                            await self._take_turns(conn, stopping)
                        else:
                            await conn.execute(self._listen("LISTEN"))
                            self.wake()  # what was enqueued before LISTEN took effect: look now
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


async def probe(url: str) -> str | None:
    """None when LISTEN/NOTIFY works on *url*, else one line saying why it does not."""
    async with await db.connect_async(url, application_name="conveyor-listen-probe") as conn:
        return await probe_connection(conn, url)


async def probe_connection(conn: psycopg.AsyncConnection[Any], url: str) -> str | None:
    """Probe *conn* (autocommit, opened on *url*): LISTEN on a channel of its own, NOTIFY it from
    a second connection, wait for it. A pooler is recognised first, by the made-up backend pid it
    hands out at login: in transaction mode the LISTEN and a later wait land on different server
    sessions, and a lucky probe that reused the same one would prove nothing."""
    cursor = await conn.execute(db.BACKEND_PID_SQL)
    row = await cursor.fetchone()
    where = redact(url)
    if db.behind_pooler(conn.info.backend_pid, row[0] if row else None):
        return (
            f"LISTEN/NOTIFY cannot work through the pooler at {where} (set "
            "CONVEYOR_DIRECT_DATABASE_URL to the server itself for wake-ups)"
        )
    channel = f"conveyor_probe_{uuid.uuid4().hex[:12]}"
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    try:
        async with await db.connect_async(url, application_name="conveyor-listen-probe") as other:
            await other.execute("SELECT pg_notify(%s, 'probe')", (channel,))
        async for _ in conn.notifies(timeout=PROBE_SECONDS, stop_after=1):
            return None
    except TimeoutError:
        pass
    finally:
        await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
    return f"LISTEN/NOTIFY does not reach connections to {where} (a pooler in transaction mode?)"
