"""Run one conveyor SQL function call and turn its jsonb answer into Python.

The only place that maps refusals to `Refused`/`Disabled`/`LeaseLost` and SQLSTATEs to
conveyor's exceptions (see errors.py). A `Statement` is one call described once (its SQL and
its arguments); the sync `call` and the asyncio `acall` both run it: ``call(conn, *statement)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString, NamedTuple

import psycopg

from conveyor.errors import Disabled, LeaseLost, Refused, translate
from conveyor.types import JsonObject


class Statement(NamedTuple):
    """One `SELECT fn_…(…)` and its arguments, in the order its placeholders name them."""

    sql: LiteralString
    params: tuple[Any, ...] = ()


def answer_or_raise(answer: Any) -> JsonObject:
    """Return *answer* when it is an ok answer; raise the matching `Refused` otherwise."""
    if isinstance(answer, str):  # a connection that loads jsonb as text (Django registers one)
        answer = json.loads(answer)
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
    with _translated():
        row = conn.execute(sql, params).fetchone()
    return _answer(row)


async def acall(
    conn: psycopg.AsyncConnection[Any], sql: LiteralString, params: Sequence[Any] = ()
) -> JsonObject:
    """The asyncio twin of `call`: same statements, same answer handling."""
    with _translated():
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
    return _answer(row)


@contextmanager
def _translated() -> Iterator[None]:
    """Re-raise a psycopg error as conveyor's exception for its SQLSTATE, if it has one."""
    try:
        yield
    except psycopg.Error as error:
        translated = translate(error)
        if translated is error:
            raise
        raise translated from error


def _answer(row: tuple[Any, ...] | None) -> JsonObject:
    if row is None:
        raise RuntimeError("the function returned no row")
    return answer_or_raise(row[0])
