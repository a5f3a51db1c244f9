"""The orchestrator: the one named owner of ticks. Several may run; one leads through the leader
row (a term and an expiry, phase 3), which works through transaction-pooling PgBouncer where
session advisory locks do not. A deposed leader notices before its next step and stops acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg

from conveyor import db, tick
from conveyor.calls import call
from conveyor.errors import ConfigError, Refused
from conveyor.heartbeat import Heartbeat, process_metadata
from conveyor.notify import EVENTS_CHANNEL, Listener

log = logging.getLogger(__name__)

ACQUIRE_SQL: LiteralString = """
    SELECT conveyor.fn_orchestrator_acquire(candidate => %s::text, lease_seconds => %s::integer)
"""
CHECK_SQL: LiteralString = """
    SELECT conveyor.fn_orchestrator_check(candidate => %s::text, term => %s::bigint)
"""
RESIGN_SQL: LiteralString = """
    SELECT conveyor.fn_orchestrator_resign(candidate => %s::text, term => %s::bigint)
"""


@dataclass(frozen=True, slots=True)
class OrchestratorConfig:
    """How often to tick and how long leadership lasts without renewal."""

    name: str | None = None
    interval: float = 5.0
    lease_seconds: int | None = None  # None: queue.orchestrator.leader_lease_seconds

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ConfigError(f"interval must be > 0 seconds, got {self.interval}")
        if self.lease_seconds is not None and self.lease_seconds <= self.interval:
            raise ConfigError(
                f"the leader lease ({self.lease_seconds} s) must be longer than the tick interval "
                f"({self.interval} s), or leadership would lapse between ticks"
            )


@dataclass(slots=True)
class RoundReport:
    """What one round did: whether this process led, under which term, and the step results."""

    leader: bool
    term: int | None
    holder: str | None
    steps: list[tick.StepResult] = field(default_factory=list)


class Orchestrator:
    """Runs tick rounds every *interval* seconds while it holds leadership."""

    def __init__(self, url: str, config: OrchestratorConfig | None = None) -> None:
        self.url = url
        self.config = config or OrchestratorConfig()
        self.name = self.config.name or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.component = f"orchestrator:{self.name}"
        self.heartbeat = Heartbeat(
            self.component,
            "orchestrator",
            max(1, round(self.config.interval)),
            process_metadata({"interval": self.config.interval}),
        )
        self.term: int | None = None
        self.last: RoundReport | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Run the next round now (an outbox emit arrived); called on the event loop."""
        self._wake.set()

    async def run(self) -> None:
        """Tick until stop(); reconnect with capped backoff when the database goes away.

        Between rounds it also LISTENs for outbox emits (phase 4 with the NOTIFY bridge on), so
        dispatch runs as soon as an event commits rather than at the next interval.
        """
        backoff = 0.5
        listener = Listener(self.url, f"orchestrator:{self.name}", self.wake, EVENTS_CHANNEL)
        listening = asyncio.create_task(listener.run(self._stopping), name="conveyor-listen")
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.last = await asyncio.to_thread(self.round)
                backoff = 0.5
                delay = self.config.interval
            except (
                ConfigError,  # db.connect: the server cannot be reached
                psycopg.OperationalError,
                psycopg.errors.ReadOnlySqlTransaction,
                psycopg.errors.QueryCanceled,
                psycopg.errors.LockNotAvailable,
            ) as error:  # the database is away, read-only or locked: wait, never exit
                log.warning(
                    "orchestrator %s: database unavailable (%s: %s); retrying in %.1f s",
                    self.name,
                    type(error).__name__,
                    str(error).strip().splitlines()[0],
                    backoff,
                )
                self._close()
                delay, backoff = backoff, min(backoff * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
        listening.cancel()
        await asyncio.to_thread(self._shutdown)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = db.connect(
                self.url,
                autocommit=True,
                application_name=f"conveyor-orchestrator:{self.name}"[:63],
            )
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def round(self) -> RoundReport:
        """One round: beat, (re)acquire leadership, and tick if leading."""
        conn = self._connection()
        row = conn.execute(tick.APPLIED_SQL).fetchone()
        applied = set(row[0]) if row else set()
        if 3 not in applied:  # no leader row before phase 3: every tick is idempotent anyway
            return RoundReport(True, None, self.name, tick.run(conn, applied))
        self.heartbeat.beat(conn)
        try:
            answer = call(conn, ACQUIRE_SQL, (self.name, self.config.lease_seconds))
        except Refused as refusal:
            log.warning("orchestrator %s: leadership refused: %s", self.name, refusal.reason)
            return RoundReport(False, None, None)
        leader = bool(answer.get("leader"))
        term = int(answer["term"]) if answer.get("term") is not None else None
        if leader and term != self.term:
            log.info("orchestrator %s leads (term %s)", self.name, term)
        elif not leader and self.term is not None:
            log.warning("orchestrator %s lost leadership to %s", self.name, answer.get("holder"))
        self.term = term if leader else None
        if not leader:
            return RoundReport(False, term, answer.get("holder"))

        def still_leader() -> bool:
            row = conn.execute(CHECK_SQL, (self.name, term)).fetchone()
            return bool(row and row[0]["leader"])

        steps = tick.run(conn, applied, still_leader)
        return RoundReport(True, term, self.name, steps)

    def _shutdown(self) -> None:
        """Graceful stop: resign (so another orchestrator takes over at once) and deregister."""
        try:
            conn = self._connection()
            if self.term is not None:
                call(conn, RESIGN_SQL, (self.name, self.term))
            self.heartbeat.deregister(conn)
        except (psycopg.Error, Refused) as error:
            log.warning("orchestrator %s: clean shutdown incomplete: %s", self.name, error)
        finally:
            self._close()
