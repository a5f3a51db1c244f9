"""Phase 7 from Python: one thin wrapper per ``fn_customer_*`` SQL function, plus the reads of
``v_customer_message``.

Each wrapper sends one SQL constant on the caller's connection (it never commits: the caller owns
the transaction — ``send_begin`` must be committed before SMTP DATA) and returns the jsonb answer.
A refusal raises `conveyor.errors.Refused` (``Disabled`` while ``customer.channel.enabled`` is
false) whose ``.reason`` and ``.answer`` say why: e.g. ``send_begin`` → ``not_approved``,
``approval_void``, ``rejected``, ``already_sent``, ``reconcile_required``. The wrappers of the
functions the channel adapter calls have asyncio twins (``a…``). Answers carry ids, states and
hashes; only ``send_begin`` and ``body`` return PII (their SQL needs ``conveyor_pii``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from conveyor.calls import Statement, acall, call
from conveyor.types import JsonObject

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

INGEST_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_ingest(
    account => %s, mailbox => %s, uidvalidity => %s, uid => %s, message_id => %s,
    received_at => %s, subject => %s, from_address => %s, to_addresses => %s::text[],
    cc_addresses => %s::text[], reply_to => %s, in_reply_to => %s, references_header => %s,
    text_body => %s, html_body => %s, raw_size => %s, problems => %s::text[])
"""
CURSOR_SQL: LiteralString = (
    "SELECT conveyor.fn_customer_mailbox_cursor(account => %s, mailbox => %s)"
)
ADVANCE_SQL: LiteralString = """
SELECT conveyor.fn_customer_mailbox_advance(account => %s, mailbox => %s,
                                             uidvalidity => %s, last_uid => %s)
"""
SEND_BEGIN_SQL: LiteralString = (
    "SELECT conveyor.fn_customer_send_begin(message_id => %s, job_id => %s)"
)
SEND_FINISH_SQL: LiteralString = (
    "SELECT conveyor.fn_customer_send_finish(send_id => %s, outcome => %s, detail => %s)"
)
RECONCILE_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_reconcile(message_id => %s, outcome => %s, actor => %s,
                                               note => %s)
"""
CLASSIFY_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_classify(message_id => %s, classification => %s, actor => %s)
"""
DRAFT_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_draft(message_id => %s, subject => %s, text => %s, actor => %s)
"""
EDIT_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_edit(message_id => %s, subject => %s, text => %s, actor => %s)
"""
APPROVE_SQL: LiteralString = """
SELECT conveyor.fn_customer_message_approve(message_id => %s, draft_sha256 => %s, actor => %s)
"""
REVOKE_SQL: LiteralString = (
    "SELECT conveyor.fn_customer_message_revoke(message_id => %s, actor => %s)"
)
REJECT_SQL: LiteralString = (
    "SELECT conveyor.fn_customer_message_reject(message_id => %s, actor => %s, reason => %s)"
)
BODY_SQL: LiteralString = "SELECT conveyor.fn_customer_message_body(message_id => %s)"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One parsed inbound mail, as `ingest` stores it (p7-mail's MIME parser fills it)."""

    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    message_id: str | None
    received_at: datetime | None
    subject: str | None
    from_address: str | None
    to_addresses: Sequence[str] = ()
    cc_addresses: Sequence[str] = ()
    reply_to: str | None = None
    in_reply_to: str | None = None
    references_header: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    raw_size: int | None = None
    problems: Sequence[str] = ()


def ingest_statement(mail: Inbound) -> Statement:
    return Statement(
        INGEST_SQL,
        (
            mail.account,
            mail.mailbox,
            mail.uidvalidity,
            mail.uid,
            mail.message_id,
            mail.received_at,
            mail.subject,
            mail.from_address,
            list(mail.to_addresses),
            list(mail.cc_addresses),
            mail.reply_to,
            mail.in_reply_to,
            mail.references_header,
            mail.text_body,
            mail.html_body,
            mail.raw_size,
            list(mail.problems),
        ),
    )


def ingest(conn: Conn, mail: Inbound) -> JsonObject:
    """Store one mail (idempotent) → ``{"id", "created", "workflow_id"|"duplicate"}``."""
    return call(conn, *ingest_statement(mail))


async def aingest(conn: AsyncConn, mail: Inbound) -> JsonObject:
    return await acall(conn, *ingest_statement(mail))


def mailbox_cursor(conn: Conn, account: str, mailbox: str) -> JsonObject:
    """``{"uidvalidity": N|None, "last_uid": N}`` of one mailbox."""
    return call(conn, CURSOR_SQL, (account, mailbox))


async def amailbox_cursor(conn: AsyncConn, account: str, mailbox: str) -> JsonObject:
    return await acall(conn, CURSOR_SQL, (account, mailbox))


def mailbox_advance(
    conn: Conn, account: str, mailbox: str, uidvalidity: int, last_uid: int
) -> JsonObject:
    """Move the cursor after ingesting up to *last_uid* → ``{"ok", "uidvalidity_changed"}``."""
    return call(conn, ADVANCE_SQL, (account, mailbox, uidvalidity, last_uid))


async def amailbox_advance(
    conn: AsyncConn, account: str, mailbox: str, uidvalidity: int, last_uid: int
) -> JsonObject:
    return await acall(conn, ADVANCE_SQL, (account, mailbox, uidvalidity, last_uid))


def send_begin(conn: Conn, message_id: int, job_id: int | None = None) -> JsonObject:
    """Begin the one send of an approved draft (commit before DATA) → the draft to send."""
    return call(conn, SEND_BEGIN_SQL, (message_id, job_id))


async def asend_begin(conn: AsyncConn, message_id: int, job_id: int | None = None) -> JsonObject:
    return await acall(conn, SEND_BEGIN_SQL, (message_id, job_id))


def send_finish(conn: Conn, send_id: int, outcome: str, detail: str | None = None) -> JsonObject:
    """Record a send's outcome: ``sent`` | ``not_sent`` | ``unknown`` (detail: SMTP code/text)."""
    return call(conn, SEND_FINISH_SQL, (send_id, outcome, detail))


async def asend_finish(
    conn: AsyncConn, send_id: int, outcome: str, detail: str | None = None
) -> JsonObject:
    return await acall(conn, SEND_FINISH_SQL, (send_id, outcome, detail))


def reconcile(
    conn: Conn, message_id: int, outcome: str, actor: str, note: str | None = None
) -> JsonObject:
    """A person decides a send of unknown outcome: ``sent`` or ``not_sent`` (sends again)."""
    return call(conn, RECONCILE_SQL, (message_id, outcome, actor, note))


def classify(
    conn: Conn, message_id: int, classification: str, actor: str | None = None
) -> JsonObject:
    return call(conn, CLASSIFY_SQL, (message_id, classification, actor))


async def aclassify(
    conn: AsyncConn, message_id: int, classification: str, actor: str | None = None
) -> JsonObject:
    return await acall(conn, CLASSIFY_SQL, (message_id, classification, actor))


def draft(
    conn: Conn, message_id: int, subject: str | None, text: str, actor: str | None = None
) -> JsonObject:
    """Store the draft reply → ``{"draft_sha256", "state"}`` (auto-approved when not required)."""
    return call(conn, DRAFT_SQL, (message_id, subject, text, actor))


async def adraft(
    conn: AsyncConn, message_id: int, subject: str | None, text: str, actor: str | None = None
) -> JsonObject:
    return await acall(conn, DRAFT_SQL, (message_id, subject, text, actor))


def edit(
    conn: Conn, message_id: int, actor: str, *, subject: str | None = None, text: str | None = None
) -> JsonObject:
    """A person edits the draft (None keeps a part); the new hash voids any approval."""
    return call(conn, EDIT_SQL, (message_id, subject, text, actor))


def approve(conn: Conn, message_id: int, actor: str, draft_sha256: str | None = None) -> JsonObject:
    """Approve the draft whose hash is *draft_sha256* (None: the current one) and release send."""
    return call(conn, APPROVE_SQL, (message_id, draft_sha256, actor))


def revoke(conn: Conn, message_id: int, actor: str) -> JsonObject:
    return call(conn, REVOKE_SQL, (message_id, actor))


def reject(conn: Conn, message_id: int, actor: str, reason: str | None = None) -> JsonObject:
    return call(conn, REJECT_SQL, (message_id, actor, reason))


def body(conn: Conn, message_id: int) -> JsonObject:
    """The PII of one message (subject, addresses, bodies, draft); needs ``conveyor_pii``."""
    return call(conn, BODY_SQL, (message_id,))


async def abody(conn: AsyncConn, message_id: int) -> JsonObject:
    return await acall(conn, BODY_SQL, (message_id,))


_LIST_SQL: LiteralString = """
SELECT m.* FROM conveyor.v_customer_message AS m
 WHERE %(state)s::text IS NULL OR m.state = %(state)s::text
 ORDER BY m.id DESC
 LIMIT %(limit)s
"""
_GET_SQL: LiteralString = "SELECT m.* FROM conveyor.v_customer_message AS m WHERE m.id = %s"
_HEALTH_SQL: LiteralString = (
    "SELECT h.* FROM conveyor.v_customer_message_health AS h ORDER BY h.state"
)
_PII_SQL: LiteralString = "SELECT pg_has_role(current_user, 'conveyor_pii', 'USAGE')"


def list_messages(conn: Conn, *, state: str | None = None, limit: int = 50) -> list[JsonObject]:
    """Messages (no PII), newest first, optionally in one *state*."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(_LIST_SQL, {"state": state, "limit": limit}).fetchall())


def get(conn: Conn, message_id: int) -> JsonObject | None:
    """One message from v_customer_message (no PII), or None."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(_GET_SQL, (message_id,)).fetchone()


def health(conn: Conn) -> list[JsonObject]:
    """v_customer_message_health: messages per state and the oldest one's age."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(_HEALTH_SQL).fetchall())


def may_read_pii(conn: Conn) -> bool:
    """Whether the current role has conveyor_pii (what `conveyor messages show` asks)."""
    row = conn.execute(_PII_SQL).fetchone()
    return bool(row and row[0])
