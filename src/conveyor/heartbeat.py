"""Heartbeat calls (phase 3): register an incarnation, beat, deregister on a graceful stop.

A component's silence is judged in SQL (fn_heartbeat_stale_check, run by the orchestrator); this
module only sends the beats, from whatever thread owns a component's liveness.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from conveyor.calls import call
from conveyor.errors import Refused
from conveyor.types import JsonObject

log = logging.getLogger(__name__)

REGISTER_SQL: LiteralString = """
    SELECT conveyor.fn_heartbeat_register(
        component => %s::text,
        component_kind => %s::text,
        cadence_seconds => %s::integer,
        metadata => %s::jsonb
    )
"""
BEAT_SQL: LiteralString = """
    SELECT conveyor.fn_heartbeat_beat(component => %s::text, epoch => %s::uuid)
"""
DEREGISTER_SQL: LiteralString = """
    SELECT conveyor.fn_heartbeat_deregister(component => %s::text, epoch => %s::uuid)
"""


def process_metadata(extra: JsonObject | None = None) -> JsonObject:
    """What a heartbeat row says about its process (no secrets: host, pid, and *extra*)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **(extra or {})}


class Heartbeat:
    """One component's heartbeat: register once, then beat; deregister on a graceful stop."""

    def __init__(
        self, component: str, kind: str, cadence_seconds: int, metadata: JsonObject
    ) -> None:
        self.component = component
        self.kind = kind
        self.cadence_seconds = cadence_seconds
        self.metadata = metadata
        self.epoch: UUID | None = None

    def beat(self, conn: psycopg.Connection[Any]) -> None:
        """Beat (registering first if this incarnation has not yet); log refusals once each."""
        try:
            if self.epoch is None:
                answer = call(
                    conn,
                    REGISTER_SQL,
                    (self.component, self.kind, self.cadence_seconds, Jsonb(self.metadata)),
                )
                self.epoch = UUID(str(answer["epoch"]))
                log.info("heartbeat %s registered (epoch %s)", self.component, self.epoch)
            call(conn, BEAT_SQL, (self.component, self.epoch))
        except Refused as refusal:
            if refusal.reason == "epoch_superseded":
                log.error(
                    "heartbeat %s: another process registered the same name; this one stops "
                    "beating under it (give each process its own --name)",
                    self.component,
                )
            else:
                log.warning("heartbeat %s refused: %s", self.component, refusal.reason)

    def deregister(self, conn: psycopg.Connection[Any]) -> None:
        """Graceful stop: the component leaves the health view without raising an alarm."""
        if self.epoch is None:
            return
        try:
            call(conn, DEREGISTER_SQL, (self.component, self.epoch))
        except (Refused, psycopg.Error) as error:
            log.warning("heartbeat %s: deregister failed: %s", self.component, error)
