"""Lease renewal and the worker's heartbeat on their own thread and connection, so a blocked event
loop, a long synchronous handler or a saturated pool can never starve them (RELIABILITY §0.3)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg

from conveyor import jobs
from conveyor.calls import call
from conveyor.errors import LeaseLost
from conveyor.heartbeat import Heartbeat

log = logging.getLogger(__name__)

Snapshot = Callable[[], list[tuple[int, UUID]]]
OnEvent = Callable[[int, str], None]  # (job id, "lost" | "cancel")


class LeaseKeeper:
    """Extends the leases of running jobs before they expire; reports loss and cancellation.

    A job's lease is renewed once less than half of it remains. When renewal answers
    ``lease_lost``, or keeps failing until the lease would have run out locally, the job is
    reported "lost" and its handler must stop; its result is then discarded.
    """

    def __init__(
        self,
        url: str,
        worker: str,
        lease_seconds: int,
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
        self.interval = max(0.5, lease_seconds / 6)
        if heartbeat is not None:
            self.interval = min(self.interval, heartbeat.cadence_seconds)
        self._last_beat = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-lease", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._expires: dict[int, float] = {}  # job id → local monotonic time its lease ends
        self._reported: set[int] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, graceful: bool = True) -> None:
        """Stop the thread; a graceful stop also deregisters the heartbeat (no silence alarm)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if graceful and self.heartbeat is not None:
            conn = self._connection()
            if conn is not None:
                self.heartbeat.deregister(conn)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while True:
            try:
                self._beat()
                self.tick()
            except Exception:  # never let the renewal thread die
                log.exception("lease renewal round failed")
            if self._stop.wait(self.interval):
                return

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
            self.heartbeat.beat(conn)
            self._last_beat = now
        except psycopg.Error as error:
            log.warning("heartbeat failed: %s", str(error).strip()[:200])

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        timeout_ms = int(max(1.0, self.lease_seconds / 3) * 1000)
        try:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, self.lease_seconds // 3),
                application_name=f"conveyor-lease:{self.worker}"[:63],
                options=f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            )
        except psycopg.OperationalError as error:
            log.warning("lease connection failed: %s", str(error).strip()[:200])
            self._conn = None
        return self._conn

    def tick(self) -> None:
        """One renewal round over the running jobs."""
        now = time.monotonic()
        running = dict(self.snapshot())
        for job_id in list(self._expires):
            if job_id not in running:
                del self._expires[job_id]
                self._reported.discard(job_id)
        for job_id, token in running.items():
            # first seen up to one interval after its claim: assume the lease started then
            expires = self._expires.setdefault(job_id, now + self.lease_seconds - self.interval)
            if job_id in self._reported or expires - now > self.lease_seconds / 2:
                continue
            self._renew(job_id, token, expires)

    def _renew(self, job_id: int, token: UUID, expires: float) -> None:
        conn = self._connection()
        try:
            if conn is None:
                raise psycopg.OperationalError("no lease connection")
            answer = call(conn, jobs.EXTEND_SQL, (job_id, token, self.lease_seconds))
        except LeaseLost:
            self._report(job_id, "lost")
            return
        except psycopg.Error as error:
            margin = min(2.0, self.lease_seconds * 0.1)
            if time.monotonic() >= expires - margin:
                log.warning("job %s: lease could not be renewed in time (%s)", job_id, error)
                self._report(job_id, "lost")
            return
        self._expires[job_id] = time.monotonic() + self.lease_seconds
        if answer.get("cancel_requested"):
            self._report(job_id, "cancel")

    def _report(self, job_id: int, event: str) -> None:
        self._reported.add(job_id)
        self.on_event(job_id, event)
