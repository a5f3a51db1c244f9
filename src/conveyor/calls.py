"""Run one conveyor SQL function call and turn its jsonb answer into Python.

The only place that maps refusals to `Refused`/`Disabled`/`LeaseLost` and SQLSTATEs to
conveyor's exceptions (see errors.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

import psycopg

from conveyor.errors import Disabled, LeaseLost, Refused, translate
from conveyor.types import JsonObject


def answer_or_raise(answer: Any) -> JsonObject:
    """Return *answer* when it is an ok answer; raise the matching `Refused` otherwise."""
    if not isinstance(answer, dict):
        raise TypeError(f"expected a jsonb object answer, got {type(answer).__name__}")
    if answer.get("refused"):
        reason = str(answer.get("reason", ""))
        if reason == "lease_lost":
            raise LeaseLost(answer)
        if reason.endswith("_disabled"):
            raise Disabled(answer)
        raise Refused(answer)
    return answer


def call(
    conn: psycopg.Connection[Any], sql: LiteralString, params: Sequence[Any] = ()
) -> JsonObject:
    """Execute *sql* (one `SELECT fn_…(…)`) and return its answer, raising on refusal."""
    try:
        row = conn.execute(sql, params).fetchone()
    except psycopg.Error as error:
        translated = translate(error)
        if translated is error:
            raise
        raise translated from error
    if row is None:
        raise RuntimeError("the function returned no row")
    return answer_or_raise(row[0])


async def acall(
    conn: psycopg.AsyncConnection[Any], sql: LiteralString, params: Sequence[Any] = ()
) -> JsonObject:
    """The asyncio twin of `call`: same SQL constants, same answer handling."""
    try:
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
    except psycopg.Error as error:
        translated = translate(error)
        if translated is error:
            raise
        raise translated from error
    if row is None:
        raise RuntimeError("the function returned no row")
    return answer_or_raise(row[0])
