"""The platform's outbound worker loop: call `fn_iu_outbound_tick` on a cadence.

Delivery, cursor movement and the last_run_at liveness stamp all happen in SQL; this module
only sends the tick, hands log-sink events to the caller, and commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg

from conveyor.calls import call
from conveyor.errors import Disabled
from conveyor.types import JsonObject

log = logging.getLogger(__name__)

_TICK: LiteralString = "SELECT conveyor.fn_iu_outbound_tick(name => %s, batch => %s)"


def tick(
    conn: psycopg.Connection[Any],
    name: str = "iu_outbound_default",
    batch: int | None = None,
) -> JsonObject:
    """Run one round of outbound worker *name* on *conn* and return its answer.

    Wraps ``fn_iu_outbound_tick``; *batch* None means the database default (500). Runs in
    the caller's transaction: deliveries, the cursor move and ``last_run_at`` become durable
    when the caller commits. The answer is ``{ok, worker, sink, delivered, last_run_at}``
    plus ``events`` for a log sink. Raises Disabled while the worker row is disabled and
    InvalidInput for an unknown worker or a batch outside 1..10000.
    """
    return call(conn, _TICK, (name, batch))


def run(
    conn: psycopg.Connection[Any],
    name: str = "iu_outbound_default",
    *,
    interval: float,
    once: bool,
    stop: threading.Event | None = None,
    on_events: Callable[[list[JsonObject]], None] | None = None,
) -> int:
    """Tick outbound worker *name* every *interval* seconds until *stop* is set; return ticks run.

    Each tick is its own transaction on *conn*, which must be in autocommit mode or idle (an
    open transaction would turn the ticks into savepoints that commit only with it). Events
    of a log sink go to *on_events* (by default each is logged by id and type, never its
    payload) before the tick commits, so an exception there rolls the tick back and the
    events are delivered again: at least once.
    With *once*, one tick runs and a disabled worker raises Disabled; otherwise a disabled
    worker is logged once and ticked again every interval until it is enabled or *stop* is set.
    """
    if interval <= 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    stop = stop or threading.Event()
    deliver = on_events or _log_events
    ticks = 0
    disabled_logged = False
    while not stop.is_set():
        try:
            with conn.transaction():
                answer = tick(conn, name)
                events: list[JsonObject] = answer.get("events") or []
                if events:
                    deliver(events)
        except Disabled:
            if once:
                raise
            if not disabled_logged:
                log.warning("outbound worker %s is disabled; waiting for it to be enabled", name)
                disabled_logged = True
        else:
            ticks += 1
            if disabled_logged:
                log.info("outbound worker %s is enabled again", name)
                disabled_logged = False
            log.debug("outbound worker %s delivered %s event(s)", name, answer.get("delivered", 0))
        if once:
            break
        stop.wait(interval)
    return ticks


def _log_events(events: list[JsonObject]) -> None:
    for event in events:
        log.info(
            "outbound event id=%s type=%s source=%s",
            event.get("id"),
            event.get("event_type"),
            event.get("source"),
        )
