"""Lease renewal and the worker's heartbeat on their own thread and connection, so a blocked event
loop, a long synchronous handler or a saturated pool can never starve them (RELIABILITY §0.3)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from conveyor import db, jobs
from conveyor.calls import call
from conveyor.errors import ConfigError, LeaseLost
from conveyor.heartbeat import Heartbeat

log = logging.getLogger(__name__)

IDLE_INTERVAL = 5.0  # seconds between rounds while no job runs (or the heartbeat's cadence)
# Per transaction (SET LOCAL): behind a transaction pooler a session setting would stay on the
# server connection and reach other clients.
TIMEOUTS_SQL = """
    SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A running job's lease as the worker knows it."""

    job_id: int
    token: UUID
    seconds: float  # the lease the database granted (lease_expires_at - claimed_at)
    expires: float  # local monotonic time it ends, counted from before the claim was sent


Snapshot = Callable[[], list[Lease]]
OnEvent = Callable[[int, str], None]  # (job id, "lost" | "cancel")


class LeaseKeeper:
    """Extends the leases of running jobs before they expire; reports loss and cancellation.

    A job's lease is renewed once less than half of it remains, for *lease_seconds* (None: the
    database's ``queue.lease.default_seconds``, as at the claim). When renewal answers
    ``lease_lost``, or keeps failing until the lease would have run out locally, the job is
    reported "lost" and its handler must stop; its result is then discarded.
    """

    def __init__(
        self,
        url: str,
        worker: str,
        lease_seconds: int | None,
        snapshot: Snapshot,
        on_event: OnEvent,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.url = url
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.snapshot = snapshot
        self.on_event = on_event
        self.heartbeat = heartbeat
        self.idle_interval = IDLE_INTERVAL
        if heartbeat is not None:
            self.idle_interval = min(self.idle_interval, heartbeat.cadence_seconds)
        if lease_seconds is not None:
            self.idle_interval = max(0.5, min(self.idle_interval, lease_seconds / 6))
        self.interval = self.idle_interval
        self._last_beat = float("-inf")
        self._stop = threading.Event()
        self._wakeup = threading.Event()  # new jobs: look at them now, not after the interval
        self._thread = threading.Thread(target=self._run, name="conveyor-lease", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._expires: dict[int, float] = {}  # job id → local monotonic time its lease ends
        self._reported: set[int] = set()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run a round now (the worker claimed jobs whose leases the keeper has not seen yet)."""
        self._wakeup.set()

    def stop(self, graceful: bool = True) -> None:
        """Stop the thread; a graceful stop also deregisters the heartbeat (no silence alarm)."""
        self._stop.set()
        self._wakeup.set()
        self._thread.join(timeout=10)
        if graceful and self.heartbeat is not None:
            conn = self._connection()
            if conn is not None:
                self.heartbeat.deregister(conn)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._beat()
                self.tick()
            except Exception:  # never let the renewal thread die
                log.exception("lease renewal round failed")
            self._wakeup.wait(self.interval)
            self._wakeup.clear()

    def _beat(self) -> None:
        if self.heartbeat is None:
            return
        now = time.monotonic()
        if now - self._last_beat < self.heartbeat.cadence_seconds:
            return
        conn = self._connection()
        if conn is None:
            return
        try:
            with self._bounded(conn):
                self.heartbeat.beat(conn)
            self._last_beat = now
        except psycopg.Error as error:
            log.warning("heartbeat failed: %s", str(error).strip()[:200])

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            self._conn = db.connect(
                self.url, autocommit=True, application_name=f"conveyor-lease:{self.worker}"[:63]
            )
        except (psycopg.Error, ConfigError) as error:
            log.warning("lease connection failed: %s", str(error).strip()[:200])
            self._conn = None
        return self._conn

    @contextlib.contextmanager
    def _bounded(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """One transaction whose statements may not wait longer than a slice of the lease."""
        timeout = str(int(max(1.0, min(10.0, (self.lease_seconds or 30) / 3)) * 1000))
        with conn.transaction():
            conn.execute(TIMEOUTS_SQL, (timeout, timeout))
            yield

    def tick(self) -> None:
        """One renewal round over the running jobs."""
        now = time.monotonic()
        running = {lease.job_id: lease for lease in self.snapshot()}
        for job_id in list(self._expires):
            if job_id not in running:
                del self._expires[job_id]
                self._reported.discard(job_id)
        shortest = min((lease.seconds for lease in running.values()), default=None)
        self.interval = self.idle_interval
        if shortest is not None:
            self.interval = max(0.5, min(self.idle_interval, shortest / 6))
        for job_id, lease in running.items():
            expires = self._expires.setdefault(job_id, lease.expires)
            if job_id in self._reported or expires - now > lease.seconds / 2:
                continue
            self._renew(lease, expires)

    def _renew(self, lease: Lease, expires: float) -> None:
        conn = self._connection()
        sent = time.monotonic()
        try:
            if conn is None:
                raise psycopg.OperationalError("no lease connection")
            with self._bounded(conn):
                answer = call(
                    conn,
                    *jobs.extend_lease_statement(lease.job_id, lease.token, self.lease_seconds),
                )
        except LeaseLost:
            self._report(lease.job_id, "lost")
            return
        except psycopg.Error as error:
            margin = min(2.0, lease.seconds * 0.1)
            if time.monotonic() >= expires - margin:
                log.warning("job %s: lease could not be renewed in time (%s)", lease.job_id, error)
                self._report(lease.job_id, "lost")
            return
        self._expires[lease.job_id] = sent + lease.seconds
        if answer.get("cancel_requested"):
            self._report(lease.job_id, "cancel")

    def _report(self, job_id: int, event: str) -> None:
        self._reported.add(job_id)
        self.on_event(job_id, event)
