"""Wake-ups through NOTIFY: the workers' listeners of a channel take turns, so one notification
wakes one idle worker instead of all of them. Real listeners on real PostgreSQL, observed from
another connection through pg_locks (who holds the turn, who queues for it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor.notify import Listener
from helpers import unique, wait_until

Conn = psycopg.Connection[Any]

TURNS = """
    SELECT count(*) FILTER (WHERE l.granted), count(*) FILTER (WHERE NOT l.granted),
           max(l.pid) FILTER (WHERE l.granted)
      FROM pg_locks AS l
     WHERE l.locktype = 'advisory' AND l.classid = %s::oid AND l.objid = %s::oid
"""


class Listeners:
    """*n* turn-taking listeners of *channel*, run on an event loop in a thread of their own."""

    def __init__(self, dsn: str, channel: str, n: int) -> None:
        self.wakes = [0] * n
        self.listeners = [
            Listener(dsn, f"test-{i}", self._waker(i), channel, take_turns=True) for i in range(n)
        ]
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    def _waker(self, i: int) -> Any:
        def wake() -> None:
            self.wakes[i] += 1

        return wake

    async def _run(self) -> None:
        self._stopping = asyncio.Event()
        await asyncio.gather(*(listener.run(self._stopping) for listener in self.listeners))

    @property
    def notifications(self) -> int:
        return sum(listener.notifications for listener in self.listeners)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        wait_until(lambda: self._stopping is not None)
        assert self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=15)
        self._loop.close()


@pytest.fixture
def three(dsn: str) -> Iterator[Listeners]:
    listeners = Listeners(dsn, unique("wake_"), 3)
    listeners.start()
    yield listeners
    listeners.stop()


def _turns(conn: Conn, listeners: Listeners) -> tuple[int, int, int | None]:
    row = conn.execute(TURNS, listeners.listeners[0].lock_key).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


def test_one_notification_wakes_one_of_three_idle_listeners_and_hands_the_turn_on(
    connect: Any, three: Listeners
) -> None:
    conn = connect(autocommit=True)
    channel = three.listeners[0].channel
    # one listener holds the turn and has looked once; the other two queue for it
    first = wait_until(
        lambda: (t := _turns(conn, three))[:2] == (1, 2) and sum(three.wakes) == 1 and t
    )

    conn.execute("SELECT pg_notify(%s, 'default')", (channel,))

    # the holder was notified (once, alone), saw the queue and handed the turn on; the next
    # holder looked once when its turn started
    wait_until(
        lambda: (
            three.notifications == 1
            and sum(three.wakes) == 3
            and (t := _turns(conn, three))[:2] == (1, 2)
            and t[2] != first[2]
        )
    )
    conn.execute("SELECT pg_notify(%s, 'default')", (channel,))
    wait_until(lambda: three.notifications == 2 and sum(three.wakes) == 5)
    assert max(listener.notifications for listener in three.listeners) == 1
