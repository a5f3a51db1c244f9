"""`conveyor messages list|show|approve|reject|edit|revoke|reconcile`: customer messages by hand.

Every command calls one phase 7 SQL function (conveyor.customer.store). `list` and `show` read
v_customer_message, which holds no PII; `show` adds the mail and the draft only when the
database role has conveyor_pii, and says so plainly otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import connection as open_connection
from conveyor.cli.context import console
from conveyor.customer import store
from conveyor.errors import Disabled, Refused

STATES = (
    "received",
    "classified",
    "drafted",
    "awaiting_approval",
    "approved",
    "sending",
    "sent",
    "rejected",
    "reconcile",
    "failed",
)

# What a refusal means on a command line.
REASONS = {
    "not_found": "there is no message {id}; see `conveyor messages list`",
    "wrong_state": "message {id} is {state}: this cannot be done in that state",
    "draft_changed": "message {id}'s draft changed (its hash is now {draft_sha256}); "
    "look at it again with `conveyor messages show {id}` and approve that hash",
    "not_approved": "message {id} is not approved (it is {state})",
    "not_reconcile": "message {id} does not wait for a reconcile (it is {state})",
}


@contextmanager
def connection(ctx: click.Context) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a database with phase 7 applied; a refusal becomes one plain line."""
    with open_connection(ctx, needs_phase=7) as conn:
        try:
            yield conn
        except Disabled as refusal:
            raise click.ClickException(
                "customer messages are switched off: run "
                "`conveyor config set customer.channel.enabled true` first"
            ) from refusal
        except Refused as refusal:
            values = {"state": "?", "draft_sha256": "?", **refusal.answer}
            values["id"] = refusal.answer.get("message_id", "?")
            template = REASONS.get(refusal.reason, "message {id}: refused: " + refusal.reason)
            raise click.ClickException(template.format(**values)) from refusal


@click.group("messages")
def messages() -> None:
    """Customer messages: list, show, approve, reject, edit, revoke, reconcile."""


@messages.command("list")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only messages in STATE.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.pass_context
def list_command(ctx: click.Context, state: str | None, limit: int) -> None:
    """Messages, newest first (no content: ids, states, classification, approval)."""
    with connection(ctx) as conn:
        rows = store.list_messages(conn, state=state, limit=limit)
    if not rows:
        console.print("no messages" + (f" in state {state}" if state else ""))
        return
    table = Table("id", "account", "state", "class", "approved by", "send", "received")
    for row in rows:
        table.add_row(
            str(row["id"]),
            escape(str(row["account"])),
            str(row["state"]),
            str(row["classification"] or ""),
            escape(str(row["approved_by"] or "")),
            str(row["send_state"] or ""),
            f"{row['received_at']:%Y-%m-%d %H:%M}" if row["received_at"] else "",
        )
    console.print(table)


@messages.command("show")
@click.argument("message_id", type=int)
@click.pass_context
def show(ctx: click.Context, message_id: int) -> None:
    """One message; its mail and draft only for a role with conveyor_pii."""
    with connection(ctx) as conn:
        row = store.get(conn, message_id)
        if row is None:
            raise click.ClickException(REASONS["not_found"].format(id=message_id))
        pii = store.may_read_pii(conn)
        body = store.body(conn, message_id) if pii else None
    for key in (
        "id",
        "account",
        "mailbox",
        "state",
        "classification",
        "problems",
        "draft_sha256",
        "approved_sha256",
        "approved_by",
        "approved_at",
        "rejected_by",
        "workflow_id",
        "send_id",
        "send_state",
        "send_detail",
        "received_at",
    ):
        value = row.get(key)
        if value not in (None, [], ""):
            console.print(f"{key}: {escape(str(value))}", soft_wrap=True, highlight=False)
    if body is None:
        console.print(
            "content hidden: this database role does not have conveyor_pii, "
            "so the mail and the draft are not shown"
        )
        return
    lines = [
        ("from", body.get("from")),
        ("to", ", ".join(body.get("to") or [])),
        ("subject", body.get("subject")),
        ("text", body.get("text")),
        ("draft to", ", ".join(body.get("draft_to") or [])),
        ("draft subject", body.get("draft_subject")),
        ("draft text", body.get("draft_text")),
    ]
    for label, value in lines:
        if value:
            console.print(f"{label}: {escape(str(value))}", soft_wrap=True, highlight=False)


@messages.command("approve")
@click.argument("message_id", type=int)
@click.option(
    "--hash",
    "draft_sha256",
    default=None,
    help="The draft hash you read (from `show`); default: the current draft.",
)
@click.option("--by", required=True, help="Who approves (recorded).")
@click.pass_context
def approve(ctx: click.Context, message_id: int, draft_sha256: str | None, by: str) -> None:
    """Approve MESSAGE_ID's draft (bound to its hash) and release its send."""
    with connection(ctx) as conn:
        answer = store.approve(conn, message_id, by, draft_sha256)
    already = " (it already was)" if answer.get("already") else ""
    console.print(
        f"message {message_id} approved by {escape(by)}{already}: draft {answer['draft_sha256']}"
    )


@messages.command("reject")
@click.argument("message_id", type=int)
@click.option("--by", required=True, help="Who rejects (recorded).")
@click.option("--reason", required=True, help="Why (kept with the message's content).")
@click.pass_context
def reject(ctx: click.Context, message_id: int, by: str, reason: str) -> None:
    """No reply for MESSAGE_ID: its workflow is cancelled and nothing is sent."""
    with connection(ctx) as conn:
        store.reject(conn, message_id, by, reason)
    console.print(f"message {message_id} rejected by {escape(by)}")


@messages.command("edit")
@click.argument("message_id", type=int)
@click.option("--subject", default=None, help="The new subject (default: keep it).")
@click.option("--text", default=None, help="The new text.")
@click.option(
    "--file",
    "text_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the new text from this file.",
)
@click.option("--by", required=True, help="Who edits (recorded).")
@click.pass_context
def edit(
    ctx: click.Context,
    message_id: int,
    subject: str | None,
    text: str | None,
    text_file: Path | None,
    by: str,
) -> None:
    """Change MESSAGE_ID's draft; its new hash voids any approval."""
    if text is not None and text_file is not None:
        raise click.UsageError("give --text or --file, not both")
    if text_file is not None:
        try:
            text = text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"cannot read it: {error}", param_hint="--file") from error
    if subject is None and text is None:
        raise click.UsageError("nothing to change: give --subject, --text or --file")
    with connection(ctx) as conn:
        answer = store.edit(conn, message_id, by, subject=subject, text=text)
    console.print(f"message {message_id}: draft {answer['draft_sha256']} ({answer['state']})")


@messages.command("revoke")
@click.argument("message_id", type=int)
@click.option("--by", required=True, help="Who revokes (recorded).")
@click.pass_context
def revoke(ctx: click.Context, message_id: int, by: str) -> None:
    """Withdraw MESSAGE_ID's approval (before sending started)."""
    with connection(ctx) as conn:
        store.revoke(conn, message_id, by)
    console.print(f"message {message_id}: approval revoked by {escape(by)}; it awaits approval")


@messages.command("reconcile")
@click.argument("message_id", type=int)
@click.option(
    "--outcome",
    type=click.Choice(["sent", "not_sent"]),
    required=True,
    help="What you found: the customer got it (sent) or not (not_sent: send again).",
)
@click.option("--by", required=True, help="Who decides (recorded).")
@click.option("--note", required=True, help="How you know (recorded with the send).")
@click.pass_context
def reconcile(ctx: click.Context, message_id: int, outcome: str, by: str, note: str) -> None:
    """Decide a send whose outcome is unknown (the message is in reconcile)."""
    with connection(ctx) as conn:
        answer = store.reconcile(conn, message_id, outcome, by, note)
    console.print(f"message {message_id}: reconciled as {outcome}; it is now {answer['state']}")
