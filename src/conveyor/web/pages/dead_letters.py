"""Dead letters: the open ones, newest first and paginated by (failed_at, id); replay one, or a
filtered set after a confirmation that says how many. Replays go through
fn_job_dead_letter_replay with the operator's name as replayed_by."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, LiteralString
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.web.sessions import action_form, safe_path, viewer
from conveyor.web.state import act, flash, read, render

log = logging.getLogger(__name__)

PAGE_SIZE = 50
# fn_job_dead_letter_replay replays at most 10,000 rows per call.
MAX_SET = 10_000
REPLAY_ONE_SQL: LiteralString = """
    SELECT conveyor.fn_job_dead_letter_replay(dead_letter_id => %s, replayed_by => %s)
"""
REPLAY_SET_SQL: LiteralString = """
    SELECT conveyor.fn_job_dead_letter_replay(kind => %s, queue => %s, max_rows => %s,
                                              replayed_by => %s)
"""
_COLUMNS: LiteralString = """
    dl.id, dl.job_id, dl.queue, dl.kind, dl.reason, dl.error, dl.attempts, dl.failed_at
"""
_DETAIL_COLUMNS: LiteralString = """
    dl.id, dl.job_id, dl.queue, dl.kind, dl.reason, dl.error, dl.attempts, dl.failed_at,
    dl.resolved_at, dl.resolved_by, dl.replayed_job_id
"""


def _filters(request: Request) -> tuple[str | None, str | None]:
    return request.query_params.get("queue") or None, request.query_params.get("kind") or None


def _where(queue: str | None, kind: str | None) -> sql.Composed:
    conditions: list[sql.Composable] = [sql.SQL("dl.resolved_at IS NULL")]
    if queue is not None:
        conditions.append(sql.SQL("dl.queue = {}").format(queue))
    if kind is not None:
        conditions.append(sql.SQL("dl.kind = {}").format(kind))
    return sql.SQL(" AND ").join(conditions)


def _count(conn: psycopg.Connection[Any], queue: str | None, kind: str | None) -> int:
    """Open dead letters matching, counted up to MAX_SET + 1 (what one replay can take)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM conveyor.job_dead_letter AS dl WHERE {} LIMIT {})"
            " AS matching"
        ).format(_where(queue, kind), MAX_SET + 1)
    ).fetchone()
    return int(row[0]) if row else 0


def _cursor(request: Request) -> tuple[datetime, int] | None:
    at, after = request.query_params.get("at"), request.query_params.get("id")
    if not at or not after:
        return None
    try:
        return datetime.fromisoformat(at), int(after)
    except ValueError as error:
        raise HTTPException(400, "the page cursor (at, id) is not valid: start again") from error


def _list(
    conn: psycopg.Connection[Any],
    queue: str | None,
    kind: str | None,
    cursor: tuple[datetime, int] | None,
) -> dict[str, Any]:
    keyset: sql.Composable = (
        sql.SQL("AND (dl.failed_at, dl.id) < ({}, {})").format(*cursor) if cursor else sql.SQL("")
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM conveyor.job_dead_letter AS dl WHERE {} {}"
            " ORDER BY dl.failed_at DESC, dl.id DESC LIMIT {}"
        ).format(sql.SQL(_COLUMNS), _where(queue, kind), keyset, PAGE_SIZE + 1)
    ).fetchall()
    following = None
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1]
        following = urlencode(
            {k: v for k, v in (("queue", queue), ("kind", kind)) if v}
            | {"at": last[7].isoformat(), "id": last[0]}
        )
    count = _count(conn, queue, kind)
    if count > MAX_SET:  # past what a count should read: the planner's estimate
        plan = conn.execute(
            sql.SQL(
                "EXPLAIN (FORMAT JSON) SELECT 1 FROM conveyor.job_dead_letter AS dl WHERE {}"
            ).format(_where(queue, kind))
        ).fetchone()
        estimate = int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0
        return {
            "rows": rows[:PAGE_SIZE],
            "next": following,
            "count": count,
            "estimate": max(estimate, count),
        }
    return {"rows": rows[:PAGE_SIZE], "next": following, "count": count, "estimate": None}


def dead_letters_page(request: Request) -> Response:
    user = viewer(request)
    queue, kind = _filters(request)
    cursor = _cursor(request)
    data = read(request, lambda conn: _list(conn, queue, kind, cursor))
    return render(
        request,
        "dead_letters.html",
        "dead_letters",
        user,
        queue=queue,
        kind=kind,
        max_set=MAX_SET,
        paged=cursor is not None,
        **data,
    )


def _detail(conn: psycopg.Connection[Any], dead_letter_id: int, payload: bool) -> Any:
    columns: sql.Composable = sql.SQL(_DETAIL_COLUMNS)
    if payload:
        columns = sql.SQL("{}, dl.payload").format(columns)
    return conn.execute(
        sql.SQL("SELECT {} FROM conveyor.job_dead_letter AS dl WHERE dl.id = {}").format(
            columns, dead_letter_id
        )
    ).fetchone()


def dead_letter_page(request: Request) -> Response:
    user = viewer(request)
    try:
        dead_letter_id = int(request.path_params["dead_letter_id"])
    except ValueError as error:
        raise HTTPException(400, "a dead letter id is a number") from error
    row = read(request, lambda conn: _detail(conn, dead_letter_id, user.may_act))
    if row is None:
        raise HTTPException(404, f"no dead letter {dead_letter_id}")
    payload = json.dumps(row[11], indent=2) if user.may_act else None
    return render(request, "dead_letter.html", "dead_letters", user, d=row, payload=payload)


async def replay_one(request: Request) -> Response:
    user, form = await action_form(request)
    try:
        dead_letter_id = int(str(form.get("dead_letter_id", "")))
    except ValueError as error:
        raise HTTPException(400, "dead_letter_id must be a number") from error
    answer = await act(request, REPLAY_ONE_SQL, (dead_letter_id, user.name))
    log.info("console: %s replayed dead letter %s: %s", user.name, dead_letter_id, answer)
    flash(request, _summary(answer))
    return RedirectResponse(safe_path(form.get("back") or "/dead-letters"), status_code=303)


def confirm_page(request: Request) -> Response:
    user = viewer(request)
    if not user.may_act:
        raise HTTPException(403, f"{user.name} is a reader: readers see, only operators act")
    queue, kind = _filters(request)
    if queue is None and kind is None:
        raise HTTPException(400, "choose a queue and/or a kind to replay a set of dead letters")
    count = read(request, lambda conn: _count(conn, queue, kind))
    return render(
        request,
        "replay_confirm.html",
        "dead_letters",
        user,
        queue=queue,
        kind=kind,
        count=min(count, MAX_SET),
        more=count > MAX_SET,
    )


async def replay_set(request: Request) -> Response:
    user, form = await action_form(request)
    queue, kind = str(form.get("queue") or "") or None, str(form.get("kind") or "") or None
    try:
        count = int(str(form.get("count", "")))
    except ValueError as error:
        raise HTTPException(400, "count must be a number: confirm again") from error
    if queue is None and kind is None:
        raise HTTPException(400, "choose a queue and/or a kind to replay a set of dead letters")
    if count < 1:
        flash(request, "nothing to replay: no open dead letter matched")
        return RedirectResponse("/dead-letters", status_code=303)
    # max_rows is the count the operator confirmed: never more than they were told.
    answer = await act(request, REPLAY_SET_SQL, (kind, queue, min(count, MAX_SET), user.name))
    log.info(
        "console: %s replayed dead letters queue=%s kind=%s: %s",
        user.name,
        queue,
        kind,
        {"replayed": len(answer.get("replayed", [])), "skipped": len(answer.get("skipped", []))},
    )
    flash(request, _summary(answer))
    return RedirectResponse("/dead-letters", status_code=303)


def _summary(answer: dict[str, Any]) -> str:
    replayed = answer.get("replayed", [])
    skipped = answer.get("skipped", [])
    if len(replayed) == 1 and not skipped:
        one = replayed[0]
        return f"replayed dead letter {one['dead_letter_id']} as job {one['job_id']}"
    text = f"replayed {len(replayed)} dead letter(s)"
    if skipped:
        reasons = sorted({str(s.get("reason")) for s in skipped})
        text += f"; skipped {len(skipped)} ({', '.join(reasons)})"
    return text


routes = [
    Route("/dead-letters", dead_letters_page, methods=["GET"]),
    Route("/dead-letters/replay", replay_one, methods=["POST"]),
    Route("/dead-letters/replay-set", confirm_page, methods=["GET"]),
    Route("/dead-letters/replay-set", replay_set, methods=["POST"]),
    Route("/dead-letters/{dead_letter_id}", dead_letter_page, methods=["GET"]),
]
