"""Approvals (phase 7): customer messages by state (awaiting approval first), read from
v_customer_message, which holds no PII; one message's draft (and the mail it answers) only for
an operator, and only when the console's database role has conveyor_pii. Operators approve the
draft they saw (fn_customer_message_approve binds to its hash), reject, or edit it — the page
after an edit shows what changed (difflib), kept nowhere: the SQL keeps only the current draft.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.calls import call
from conveyor.cli.context import applied_phases
from conveyor.errors import Refused
from conveyor.web.sessions import action_form, viewer
from conveyor.web.state import act, flash, read, render
from conveyor.web.state import state as console_state

log = logging.getLogger(__name__)

PAGE_SIZE = 50
STATES = (
    "awaiting_approval",
    "reconcile",
    "received",
    "classified",
    "drafted",
    "approved",
    "sending",
    "sent",
    "rejected",
    "failed",
)
NEEDS_PHASE_7 = "phase 7 (customer messages) is not applied — run `conveyor phase apply 7`"
_COLUMNS: LiteralString = """
    m.id, m.account, m.mailbox, m.state, m.classification, m.problems, m.draft_sha256,
    m.approved_by, m.approved_at, m.rejected_by, m.rejected_at, m.workflow_id, m.send_state,
    m.received_at, extract(epoch FROM now() - m.updated_at) AS waiting_seconds,
    m.approval_voided_at, m.approved_sha256, m.send_detail
"""
_LIST_SQL: LiteralString = (
    "SELECT"
    + _COLUMNS
    + """
      FROM conveyor.v_customer_message AS m
     WHERE {}
     ORDER BY m.id DESC
     LIMIT {}
"""
)
_ONE_SQL: LiteralString = (
    "SELECT" + _COLUMNS + " FROM conveyor.v_customer_message AS m WHERE m.id = %s"
)
_COUNTS_SQL: LiteralString = "SELECT state, messages FROM conveyor.v_customer_message_health"
# Whether this login may read PII (false, not an error, when conveyor_pii does not exist).
_PII_SQL: LiteralString = """
    SELECT coalesce(bool_or(pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')), false)
      FROM pg_catalog.pg_roles AS r
     WHERE r.rolname = 'conveyor_pii'
"""
BODY_SQL: LiteralString = "SELECT conveyor.fn_customer_message_body(message_id => %s)"
APPROVE_SQL: LiteralString = """
    SELECT conveyor.fn_customer_message_approve(
        message_id => %s, draft_sha256 => %s, actor => %s)
"""
REJECT_SQL: LiteralString = """
    SELECT conveyor.fn_customer_message_reject(message_id => %s, actor => %s, reason => %s)
"""
EDIT_SQL: LiteralString = """
    SELECT conveyor.fn_customer_message_edit(
        message_id => %s, subject => %s, text => %s, actor => %s)
"""


_NO_PII = (
    "the console's database role has no conveyor_pii, so nobody here can see the draft: "
    "approve where it can be read"
)


def _id(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as error:
        raise HTTPException(400, f"{what} must be a number, not {value[:40]!r}") from error


def may_read_pii(conn: psycopg.Connection[Any]) -> bool:
    """True when the console's database login may read customer PII (conveyor_pii)."""
    row = conn.execute(_PII_SQL).fetchone()
    return bool(row and row[0])


def _list(conn: psycopg.Connection[Any], state: str | None, before: int | None) -> dict[str, Any]:
    if 7 not in applied_phases(conn):
        return {"phase7": False, "rows": [], "next_before": None, "counts": {}}
    conditions: list[sql.Composable] = [sql.SQL("true")]
    if state is not None:
        conditions.append(sql.SQL("m.state = {}").format(state))
    if before is not None:
        conditions.append(sql.SQL("m.id < {}").format(before))
    query = sql.SQL(_LIST_SQL).format(sql.SQL(" AND ").join(conditions), PAGE_SIZE + 1)
    rows = conn.cursor(row_factory=dict_row).execute(query).fetchall()
    counts = {str(s): int(n) for s, n in conn.execute(_COUNTS_SQL).fetchall()}
    following = rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None
    return {"phase7": True, "rows": rows[:PAGE_SIZE], "next_before": following, "counts": counts}


def approvals_page(request: Request) -> Response:
    user = viewer(request)
    raw = request.query_params.get("state", "awaiting_approval")
    state = raw or None  # "" is any state
    if state is not None and state not in STATES:
        raise HTTPException(400, f"state {state[:40]!r} is not one of {', '.join(STATES)}")
    before_text = request.query_params.get("before")
    before = _id(before_text, "before") if before_text else None
    data = read(request, lambda conn: _list(conn, state, before))
    return render(
        request,
        "approvals.html",
        "approvals",
        user,
        state=state,
        before=before,
        states=STATES,
        needs=NEEDS_PHASE_7,
        **data,
    )


def _detail(conn: psycopg.Connection[Any], message_id: int, operator: bool) -> dict[str, Any]:
    if 7 not in applied_phases(conn):
        return {"phase7": False, "message": None}
    found = conn.cursor(row_factory=dict_row).execute(_ONE_SQL, (message_id,)).fetchone()
    data: dict[str, Any] = {"phase7": True, "message": found}
    data["pii"] = may_read_pii(conn)
    data["body"], data["body_refused"] = None, None
    if found and operator and data["pii"]:  # a reader never gets the body, whatever the role
        try:
            data["body"] = call(conn, BODY_SQL, (message_id,))
        except Refused as refused:
            data["body_refused"] = str(refused)
    return data


def message_page(request: Request) -> Response:
    return _message(request, _id(request.path_params["message_id"], "a message id"))


def _message(request: Request, message_id: int, diff: list[str] | None = None) -> Response:
    user = viewer(request)
    data = read(request, lambda conn: _detail(conn, message_id, user.may_act))
    if data["phase7"] and data["message"] is None:
        raise HTTPException(404, f"no customer message {message_id}: see /approvals")
    return render(
        request,
        "approval.html",
        "approvals",
        user,
        message_id=message_id,
        needs=NEEDS_PHASE_7,
        diff=diff,
        **data,
    )


async def approve(request: Request) -> Response:
    user, form = await action_form(request)
    message_id = _id(str(form.get("message_id", "")), "message_id")
    seen = str(form.get("draft_sha256") or "")
    if not seen:  # approve what was shown, never "whatever the draft is now"
        raise HTTPException(400, "draft_sha256 is required: approve from the message's page")
    if not await run_in_threadpool(read, request, may_read_pii):
        raise HTTPException(403, _NO_PII)
    answer = await act(request, APPROVE_SQL, (message_id, seen, user.name))
    log.info("console: %s approved customer message %s: %s", user.name, message_id, answer)
    flash(request, f"message {message_id} approved by {user.name}")
    return RedirectResponse(f"/approvals/{message_id}", status_code=303)


async def reject(request: Request) -> Response:
    user, form = await action_form(request)
    message_id = _id(str(form.get("message_id", "")), "message_id")
    reason = str(form.get("reason") or "").strip()[:2000] or None
    await act(request, REJECT_SQL, (message_id, user.name, reason))
    log.info("console: %s rejected customer message %s", user.name, message_id)
    flash(request, f"message {message_id} rejected by {user.name}: it gets no reply")
    return RedirectResponse(f"/approvals/{message_id}", status_code=303)


def draft_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The unified diff of two drafts (subject line, blank line, text)."""

    def lines(body: dict[str, Any]) -> list[str]:
        subject = str(body.get("draft_subject") or "")
        return [f"Subject: {subject}", "", *str(body.get("draft_text") or "").splitlines()]

    return list(
        difflib.unified_diff(
            lines(before), lines(after), "previous draft", "current draft", lineterm="", n=2
        )
    )


async def edit(request: Request) -> Response:
    user, form = await action_form(request)
    message_id = _id(str(form.get("message_id", "")), "message_id")
    subject = str(form.get("subject") or "")[:998] or None
    text = str(form.get("text") or "").replace("\r\n", "\n") or None
    console = console_state(request)

    def run() -> list[str]:
        with console.pool.connection() as conn:  # the primary: read, write, read again
            if not may_read_pii(conn):
                raise HTTPException(403, _NO_PII)
            before = call(conn, BODY_SQL, (message_id,))
            call(conn, EDIT_SQL, (message_id, subject, text, user.name))
            return draft_diff(before, call(conn, BODY_SQL, (message_id,)))

    diff = await run_in_threadpool(run)
    log.info("console: %s edited the draft of customer message %s", user.name, message_id)
    flash(request, f"draft of message {message_id} edited by {user.name}: approve it again")
    return _message(request, message_id, diff=diff or ["(no change)"])


routes = [
    Route("/approvals", approvals_page, methods=["GET"]),
    Route("/approvals/approve", approve, methods=["POST"]),
    Route("/approvals/reject", reject, methods=["POST"]),
    Route("/approvals/edit", edit, methods=["POST"]),
    Route("/approvals/{message_id}", message_page, methods=["GET"]),
]
