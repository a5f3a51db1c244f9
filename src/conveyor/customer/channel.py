"""The channel adapter's handlers: one IMAP poll round of a mailbox, and one SMTP send.

`registry` holds ``customer_message_inbound`` and ``customer_message_send`` (here) plus the
default classify and draft handlers (conveyor.customer.handlers.register). `conveyor channel
run` runs it as a worker of executor ``external_worker`` on queue ``customer``, with the
accounts it loaded (`configure`); any other worker process loads them from the environment.

The rules are the SQL functions'. Inbound: fn_customer_mailbox_cursor, then every message with
a UID above the cursor through fn_customer_message_ingest (idempotent on account, mailbox,
UIDVALIDITY and UID, then on the Message-ID), then fn_customer_mailbox_advance, all in the
job's transaction: a crash mid-poll ingests nothing twice. Send: fn_customer_send_begin in its
own committed transaction BEFORE the SMTP transaction, then fn_customer_send_finish with what
SMTP said. A refusal from send_begin (not approved, approval void, reconcile required, …)
completes the job with that reason and opens no SMTP connection.

Nothing here logs or returns a subject, an address or a body: results carry ids and counts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, LiteralString

from conveyor import db
from conveyor.customer import accounts as accounts_module
from conveyor.customer import handlers, imap, mime, smtp, store
from conveyor.customer.accounts import Account
from conveyor.errors import Disabled, Refused
from conveyor.handlers import Fail, JobContext, Registry, Retry, Snooze
from conveyor.settings import Settings
from conveyor.types import JsonObject

log = logging.getLogger(__name__)

QUEUE = "customer"
EXECUTOR = "external_worker"
INBOUND = "customer_message_inbound"
SEND = "customer_message_send"
FETCH_BATCH = 25
DISABLED_PAUSE = 30.0
UNREACHABLE_PAUSE = 15.0

ACCOUNT_SQL: LiteralString = "SELECT account FROM conveyor.v_customer_message WHERE id = %s"

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


@dataclass
class Runtime:
    """What the handlers need besides the job: the database URL and the accounts."""

    url: str
    accounts: dict[str, Account] = field(default_factory=dict)
    max_bytes: int = mime.DEFAULT_MAX_BYTES
    max_depth: int = mime.DEFAULT_MAX_DEPTH
    smtp_timeout: float = smtp.TIMEOUT

    def account(self, name: str | None) -> Account:
        if name is None and len(self.accounts) == 1:
            return next(iter(self.accounts.values()))
        found = self.accounts.get(name or "")
        if found is None:
            raise Fail(f"no mail account named {name!r} is configured in this adapter")
        return found


_runtime: Runtime | None = None


def configure(url: str, accounts: list[Account], **options: Any) -> Runtime:
    """Set the URL and accounts the handlers use (`conveyor channel run` does)."""
    global _runtime
    _runtime = Runtime(url, {a.name: a for a in accounts}, **options)
    return _runtime


def runtime() -> Runtime:
    """The configured runtime, else one from the environment (CONVEYOR_CHANNEL_*)."""
    if _runtime is None:
        return configure(db.resolve_url(Settings.from_env()), accounts_module.load())
    return _runtime


def redact(detail: str) -> str:
    """An SMTP reply without addresses (a refusal may name the recipient)."""
    return _ADDRESS.sub("<address>", " ".join(detail.split()))[:200]


# ------------------------------------------------------------------ inbound


registry = Registry()


@registry.handler(INBOUND, transactional=True)
def inbound(context: JobContext) -> JsonObject:
    """One poll round of ``{"account", "mailbox"}``: ingest every message above the cursor."""
    settings = runtime()
    account = settings.account(str(context.payload.get("account") or "") or None)
    folder = str(context.payload.get("mailbox") or "INBOX")
    conn = context.conn
    try:
        cursor = store.mailbox_cursor(conn, account.name, folder)
    except Disabled as refusal:
        raise Snooze(DISABLED_PAUSE) from refusal
    counts = {"fetched": 0, "created": 0, "duplicates": 0}
    try:
        with imap.mailbox(account, folder) as box:
            validity = imap.uidvalidity(box, folder)
            known = cursor.get("uidvalidity")
            last = int(cursor.get("last_uid") or 0) if known == validity else 0
            uids = imap.new_uids(box, last)
            for start in range(0, len(uids), FETCH_BATCH):
                for fetched in imap.fetch(
                    box, uids[start : start + FETCH_BATCH], settings.max_bytes
                ):
                    context.raise_if_cancelled()
                    answer = _ingest(conn, account.name, folder, validity, fetched, settings)
                    counts["fetched"] += 1
                    counts["created" if answer.get("created") else "duplicates"] += 1
    except imap.MailServerError as error:
        log.warning("channel %s/%s: %s; the next poll tries again", account.name, folder, error)
        return {"account": account.name, "mailbox": folder, "unreachable": str(error)}
    top = uids[-1] if uids else last
    changed = False
    if known != validity or top != last:
        advanced = store.mailbox_advance(conn, account.name, folder, validity, top)
        changed = bool(advanced.get("uidvalidity_changed"))
    if counts["fetched"] or changed:
        log.info(
            "channel %s/%s: %s fetched, %s new, %s duplicates%s",
            account.name,
            folder,
            counts["fetched"],
            counts["created"],
            counts["duplicates"],
            " (UIDVALIDITY changed)" if changed else "",
        )
    return {
        "account": account.name,
        "mailbox": folder,
        "uidvalidity": validity,
        "last_uid": top,
        "uidvalidity_changed": changed,
        **counts,
    }


def _ingest(
    conn: Any, account: str, folder: str, validity: int, fetched: imap.Fetched, settings: Runtime
) -> JsonObject:
    parsed = mime.parse(
        fetched.raw,
        raw_size=fetched.size,
        max_bytes=settings.max_bytes,
        max_depth=settings.max_depth,
    )
    mail = store.Inbound(
        account=account,
        mailbox=folder,
        uidvalidity=validity,
        uid=fetched.uid,
        message_id=parsed.message_id,
        received_at=parsed.date,
        subject=parsed.subject,
        from_address=parsed.from_address,
        to_addresses=parsed.to_addresses,
        cc_addresses=parsed.cc_addresses,
        reply_to=parsed.reply_to,
        in_reply_to=parsed.in_reply_to,
        references_header=parsed.references,
        text_body=parsed.text_body,
        html_body=parsed.html_body,
        raw_size=min(parsed.raw_size, 2**31 - 1),
        problems=parsed.problems,
    )
    try:
        return store.ingest(conn, mail)
    except Disabled as refusal:
        raise Snooze(DISABLED_PAUSE) from refusal


# ------------------------------------------------------------------ send


@registry.handler(SEND)
async def send(context: JobContext) -> JsonObject:
    """Send one approved draft at most once (see the module docstring)."""
    message_id = int(context.payload["message_id"])
    settings = runtime()
    conn = await db.connect_async(
        settings.url, autocommit=True, application_name=f"conveyor-channel:{context.worker}"[:63]
    )
    try:
        try:
            begin = await store.asend_begin(conn, message_id, context.job.job_id)
        except Disabled as refusal:
            raise Snooze(DISABLED_PAUSE) from refusal
        except Refused as refusal:  # committed nothing that needs SMTP: no connection opened
            log.warning("channel: message %s not sent: %s", message_id, refusal.reason)
            return {"message_id": message_id, "outcome": refusal.reason}
        account = settings.account(await _account_of(conn, begin, message_id))
        message = build(begin, account)
        recipients = [*begin.get("to", []), *(begin.get("cc") or [])]
        outcome = await smtp.send(account, message, recipients, timeout=settings.smtp_timeout)
        detail = redact(outcome.detail)
        finish = await store.asend_finish(conn, int(begin["send_id"]), outcome.state, detail)
    finally:
        await conn.close()
    result = {
        "message_id": message_id,
        "send_id": int(begin["send_id"]),
        "outcome": outcome.state,
        "state": finish.get("state"),
        "detail": detail,
    }
    if outcome.state == "not_sent" and detail[:1].isdigit():  # the server refused: an attempt
        log.warning("channel: message %s not sent (%s); retrying", message_id, detail)
        raise Retry(f"not sent: {detail}")
    if outcome.state == "not_sent":  # unreachable: wait for it without spending attempts
        pause = min(UNREACHABLE_PAUSE * 2 ** min(context.job.attempts, 5), 600.0)
        log.warning(
            "channel: message %s not sent, SMTP unreachable (%s); trying again in %.0f s",
            message_id,
            detail,
            pause,
        )
        raise Snooze(pause)
    if outcome.state == "unknown":
        log.warning(
            "channel: message %s: the SMTP outcome is unknown (%s); it waits for a person to "
            "reconcile (`conveyor messages`) and is never resent automatically",
            message_id,
            detail,
        )
    return result


async def _account_of(conn: Any, begin: JsonObject, message_id: int) -> str | None:
    if begin.get("account"):
        return str(begin["account"])
    if len(runtime().accounts) == 1:
        return None
    cursor = await conn.execute(ACCOUNT_SQL, (message_id,))
    row = await cursor.fetchone()
    return str(row[0]) if row else None


def build(begin: JsonObject, account: Account) -> EmailMessage:
    """The outgoing message from send_begin's answer (its Message-ID is the send row's)."""
    message = EmailMessage()
    message["From"] = account.from_address
    message["To"] = ", ".join(begin.get("to") or [])
    if begin.get("cc"):
        message["Cc"] = ", ".join(begin["cc"])
    message["Subject"] = begin.get("subject") or ""
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = begin["message_id_header"]
    if begin.get("in_reply_to"):
        message["In-Reply-To"] = begin["in_reply_to"]
    if begin.get("references"):
        message["References"] = begin["references"]
    message.set_content(begin.get("text") or "")
    return message


handlers.register(registry)  # the default classify and draft (p7-sql's; with their hook)
