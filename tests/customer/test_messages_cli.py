"""`conveyor messages …` run as a subprocess, exactly as an operator types it: list, show (the
mail only for a role with conveyor_pii), approve bound to the hash, edit, revoke, reject,
reconcile; refusals as one plain line, and nothing of the mail in a non-PII login's output."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from customer.sqlsupport import (
    Conn,
    account,
    answer,
    claim,
    complete,
    customer_dsn,
    ingest,
    message,
    move_workflow_to_queue,
    sql,
)

__all__ = ["customer_dsn", "sql"]


def conveyor(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["CONVEYOR_DATABASE_URL"] = url
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "messages", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def login(customer_dsn: str) -> Iterator[Callable[..., str]]:
    """A URL of a fresh non-superuser LOGIN role in the given roles (dropped afterwards)."""
    made: list[str] = []

    def make(*roles: str) -> str:
        name = f"t_msg_{uuid.uuid4().hex[:8]}"
        secret = uuid.uuid4().hex
        with psycopg.connect(customer_dsn, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {} IN ROLE {}").format(
                    pgsql.Identifier(name),
                    pgsql.Literal(secret),
                    pgsql.SQL(", ").join(pgsql.Identifier(r) for r in roles),
                )
            )
            admin.execute(
                pgsql.SQL("GRANT USAGE ON SCHEMA conveyor_meta TO {}").format(
                    pgsql.Identifier(name)
                )
            )
            admin.execute(
                pgsql.SQL("GRANT SELECT ON conveyor_meta.phase_state TO {}").format(
                    pgsql.Identifier(name)
                )
            )
        made.append(name)
        params = {k: str(v) for k, v in conninfo_to_dict(customer_dsn).items() if v is not None}
        params.update(user=name, password=secret)
        return make_conninfo("", **params)

    yield make
    with psycopg.connect(customer_dsn, autocommit=True) as admin:
        for name in made:
            admin.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(name)))
            admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(name)))


def _awaiting(sql: Conn, body: str = "hello", subject: str = "question") -> int:
    queue = f"q{uuid.uuid4().hex[:10]}"
    got = ingest(sql, account(), 1, body=body, subject=subject)
    move_workflow_to_queue(sql, got["workflow_id"], queue)
    for kind in ("classify", "draft"):
        job = claim(sql, queue)
        assert job is not None
        if kind == "classify":
            answer(sql, "SELECT conveyor.fn_customer_message_classify(%s, 'support')", (got["id"],))
        else:
            answer(
                sql,
                "SELECT conveyor.fn_customer_message_draft(%s, 'Re: q', %s)",
                (got["id"], f"reply to {body}"),
            )
        complete(sql, job)
    return int(got["id"])


def test_an_operator_lists_shows_edits_and_approves_by_hash(
    sql: Conn, customer_dsn: str, tmp_path: Path
) -> None:
    mid = _awaiting(sql)
    listed = conveyor("list", "--state", "awaiting_approval", url=customer_dsn)
    shown = conveyor("show", str(mid), url=customer_dsn)
    old_hash = message(sql, mid)["draft_sha256"]
    draft = tmp_path / "draft.txt"
    draft.write_text("a better reply", encoding="utf-8")
    edited = conveyor("edit", str(mid), "--file", str(draft), "--by", "bob", url=customer_dsn)
    stale = conveyor("approve", str(mid), "--hash", old_hash, "--by", "alice", url=customer_dsn)
    new_hash = message(sql, mid)["draft_sha256"]
    approved = conveyor("approve", str(mid), "--hash", new_hash, "--by", "alice", url=customer_dsn)
    revoked = conveyor("revoke", str(mid), "--by", "alice", url=customer_dsn)

    assert listed.returncode == 0, listed.stderr
    assert str(mid) in listed.stdout and "awaiting_approval" in listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert "text: hello" in shown.stdout and "draft text: reply to hello" in shown.stdout
    assert edited.returncode == 0, edited.stderr
    assert stale.returncode == 1 and "draft changed" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert approved.returncode == 0, approved.stderr
    assert f"approved by alice: draft {new_hash}" in approved.stdout
    assert revoked.returncode == 0 and "awaits approval" in revoked.stdout
    assert message(sql, mid)["state"] == "awaiting_approval"


def test_reject_and_reconcile_and_their_refusals(sql: Conn, customer_dsn: str) -> None:
    mid = _awaiting(sql)
    not_reconcile = conveyor(
        "reconcile", str(mid), "--outcome", "sent", "--by", "c", "--note", "n", url=customer_dsn
    )
    rejected = conveyor("reject", str(mid), "--by", "dave", "--reason", "spam", url=customer_dsn)
    again = conveyor("reject", str(mid), "--by", "dave", "--reason", "spam", url=customer_dsn)
    missing = conveyor("show", "999999999", url=customer_dsn)

    assert not_reconcile.returncode == 1
    assert "does not wait for a reconcile" in not_reconcile.stderr
    assert rejected.returncode == 0, rejected.stderr
    assert again.returncode == 1 and "is rejected" in again.stderr
    assert missing.returncode == 1 and "there is no message 999999999" in missing.stderr
    for result in (not_reconcile, again, missing):
        assert "Traceback" not in result.stderr


def test_a_reconcile_decides_an_unknown_send(sql: Conn, customer_dsn: str) -> None:
    mid = _awaiting(sql)
    answer(sql, "SELECT conveyor.fn_customer_message_approve(%s, NULL, 'alice')", (mid,))
    begun = answer(sql, "SELECT conveyor.fn_customer_send_begin(%s, NULL)", (mid,))
    answer(sql, "SELECT conveyor.fn_customer_send_finish(%s, 'unknown', NULL)", (begun["send_id"],))
    decided = conveyor(
        "reconcile",
        str(mid),
        "--outcome",
        "sent",
        "--by",
        "carol",
        "--note",
        "in the Sent folder",
        url=customer_dsn,
    )

    assert decided.returncode == 0, decided.stderr
    assert "reconciled as sent; it is now sent" in decided.stdout
    assert message(sql, mid)["state"] == "sent"


def test_a_login_without_conveyor_pii_sees_no_content(sql: Conn, login: Callable[..., str]) -> None:
    sentinel = f"PII{uuid.uuid4().hex}"
    mid = _awaiting(sql, body=f"body {sentinel}", subject=f"subject {sentinel}")
    reader = login("conveyor_reader")
    listed = conveyor("list", url=reader)
    shown = conveyor("show", str(mid), url=reader)

    assert listed.returncode == 0, listed.stderr
    assert shown.returncode == 0, shown.stderr
    assert "content hidden: this database role does not have conveyor_pii" in shown.stdout
    for result in (listed, shown):
        assert sentinel not in result.stdout + result.stderr
    pii = login("conveyor_reader", "conveyor_pii")
    revealed = conveyor("show", str(mid), url=pii)
    assert revealed.returncode == 0, revealed.stderr
    assert sentinel in revealed.stdout


def test_commands_refuse_plainly_while_the_channel_is_off(sql: Conn, customer_dsn: str) -> None:
    sql.execute("SELECT conveyor.fn_config_set('customer.channel.enabled', 'false')")
    try:
        result = conveyor("approve", "1", "--by", "alice", url=customer_dsn)
    finally:
        sql.execute("SELECT conveyor.fn_config_set('customer.channel.enabled', 'true')")
    assert result.returncode == 1
    assert "customer messages are switched off" in result.stderr
    assert "Traceback" not in result.stderr
