"""Phase 7 ingest and the mailbox cursor: idempotent on (account, mailbox, UIDVALIDITY, UID),
then on the Message-ID hash (a changed UIDVALIDITY re-ingests nothing), oversized bodies stored
truncated, the cursor forward-only; every function refuses while the channel is switched off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg import errors

from customer.sqlsupport import Conn, account, answer, customer_dsn, ingest, sql

__all__ = ["customer_dsn", "sql"]

FUNCTIONS_DIR = Path(__file__).parents[2] / "src" / "conveyor" / "sql" / "functions"


def test_a_repeated_uid_is_a_duplicate_and_creates_no_second_workflow(sql: Conn) -> None:
    acct = account()
    first = ingest(sql, acct, 7, message_id="<a@x>")
    again = ingest(sql, acct, 7, message_id="<a@x>")
    workflows = sql.execute(
        "SELECT count(*) FROM conveyor.job_workflow"
        " WHERE params = jsonb_build_object('message_id', %s::bigint)",
        (first["id"],),
    ).fetchone()

    assert first["created"] is True and first["workflow_id"]
    assert again == {"id": first["id"], "created": False, "duplicate": "uid"}
    assert workflows == (1,)


def test_a_changed_uidvalidity_falls_back_to_the_message_id(sql: Conn) -> None:
    acct = account()
    first = ingest(sql, acct, 1, uidvalidity=100, message_id=" <same@x> ")
    answer(sql, "SELECT conveyor.fn_customer_mailbox_advance(%s, 'INBOX', 100, 1)", (acct,))
    changed = answer(
        sql, "SELECT conveyor.fn_customer_mailbox_advance(%s, 'INBOX', 200, 0)", (acct,)
    )
    refetched = ingest(sql, acct, 1, uidvalidity=200, message_id="<same@x>")
    new = ingest(sql, acct, 2, uidvalidity=200, message_id="<other@x>")
    cursor = answer(sql, "SELECT conveyor.fn_customer_mailbox_cursor(%s, 'INBOX')", (acct,))
    event = sql.execute(
        "SELECT payload FROM conveyor.event_outbox"
        " WHERE event_type = 'customer.mailbox_uidvalidity_changed' AND payload ->> 'account' = %s",
        (acct,),
    ).fetchone()

    assert changed == {"ok": True, "uidvalidity_changed": True}
    assert refetched == {"id": first["id"], "created": False, "duplicate": "message_id"}
    assert new["created"] is True
    assert (cursor["uidvalidity"], cursor["last_uid"]) == (200, 0)
    assert event is not None and event[0]["old_uidvalidity"] == 100


def test_without_a_message_id_only_the_uid_deduplicates(sql: Conn) -> None:
    acct = account()
    first = ingest(sql, acct, 1)
    second = ingest(sql, acct, 2)
    again = ingest(sql, acct, 1)

    assert first["created"] and second["created"] and first["id"] != second["id"]
    assert again["duplicate"] == "uid"


def test_the_cursor_only_moves_forward_within_one_uidvalidity(sql: Conn) -> None:
    acct = account()
    empty = answer(sql, "SELECT conveyor.fn_customer_mailbox_cursor(%s, 'INBOX')", (acct,))
    answer(sql, "SELECT conveyor.fn_customer_mailbox_advance(%s, 'INBOX', 5, 10)", (acct,))
    back = answer(sql, "SELECT conveyor.fn_customer_mailbox_advance(%s, 'INBOX', 5, 3)", (acct,))
    cursor = answer(sql, "SELECT conveyor.fn_customer_mailbox_cursor(%s, 'INBOX')", (acct,))

    assert (empty["uidvalidity"], empty["last_uid"]) == (None, 0)
    assert back["uidvalidity_changed"] is False
    assert (cursor["uidvalidity"], cursor["last_uid"]) == (5, 10)


def test_an_oversized_body_is_stored_truncated_with_a_problem(sql: Conn) -> None:
    sql.execute("SELECT conveyor.fn_config_set('customer.body.max_bytes', '1000')")
    try:
        got = ingest(sql, account(), 1, body="é" * 5000, problems=["unknown_charset:x-foo"])
    finally:
        sql.execute("SELECT conveyor.fn_config_set('customer.body.max_bytes', '1048576')")
    stored = sql.execute(
        "SELECT octet_length(b.text_body), cm.problems FROM conveyor.customer_message_body AS b"
        " JOIN conveyor.customer_message AS cm ON cm.id = b.message_id WHERE cm.id = %s",
        (got["id"],),
    ).fetchone()

    assert got["created"] is True
    assert stored is not None and 900 <= stored[0] <= 1000
    assert stored[1] == ["unknown_charset:x-foo", "truncated"]


def test_missing_identity_arguments_are_an_error_naming_them(sql: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="account, mailbox, uidvalidity"):
        sql.execute(
            "SELECT conveyor.fn_customer_message_ingest(NULL, 'INBOX', 1, 1, NULL, now(), 's',"
            " 'f', '{}', '{}', NULL, NULL, NULL, 't', NULL, 1)"
        )


def _public_customer_functions() -> list[str]:
    names = set()
    for path in FUNCTIONS_DIR.glob("fn_customer_*.7.sql"):
        if "__" not in path.name:
            names.add(path.name.split(".")[0])
    return sorted(names)


def test_every_public_function_refuses_while_the_channel_is_off(sql: Conn) -> None:
    calls = {
        "fn_customer_message_ingest": "SELECT conveyor.fn_customer_message_ingest('a', 'INBOX', 1,"
        " 1, NULL, now(), 's', 'f', '{}', '{}', NULL, NULL, NULL, 't', NULL, 1)",
        "fn_customer_mailbox_cursor": "SELECT conveyor.fn_customer_mailbox_cursor('a', 'INBOX')",
        "fn_customer_mailbox_advance": (
            "SELECT conveyor.fn_customer_mailbox_advance('a', 'INBOX', 1, 1)"
        ),
        "fn_customer_message_classify": "SELECT conveyor.fn_customer_message_classify(1, 'x')",
        "fn_customer_message_draft": "SELECT conveyor.fn_customer_message_draft(1, 's', 't')",
        "fn_customer_message_edit": "SELECT conveyor.fn_customer_message_edit(1, 's', 't', 'a')",
        "fn_customer_message_approve": "SELECT conveyor.fn_customer_message_approve(1, NULL, 'a')",
        "fn_customer_message_revoke": "SELECT conveyor.fn_customer_message_revoke(1, 'a')",
        "fn_customer_message_reject": "SELECT conveyor.fn_customer_message_reject(1, 'a', 'r')",
        "fn_customer_message_body": "SELECT conveyor.fn_customer_message_body(1)",
        "fn_customer_send_begin": "SELECT conveyor.fn_customer_send_begin(1, NULL)",
        "fn_customer_send_finish": "SELECT conveyor.fn_customer_send_finish(1, 'sent', NULL)",
        "fn_customer_message_reconcile": "SELECT conveyor.fn_customer_message_reconcile(1, 'sent',"
        " 'a', 'n')",
    }
    assert sorted(calls) == _public_customer_functions()
    before = sql.execute("SELECT count(*) FROM conveyor.customer_message").fetchone()
    with sql.transaction(force_rollback=True):
        sql.execute("SELECT conveyor.fn_config_set('customer.channel.enabled', 'false')")
        answers = {name: answer(sql, query) for name, query in calls.items()}
        after = sql.execute("SELECT count(*) FROM conveyor.customer_message").fetchone()

    expected = {
        "refused": True,
        "reason": "customer_channel_disabled",
        "flag": "customer.channel.enabled",
    }
    assert {name: got for name, got in answers.items() if got != expected} == {}
    assert before == after


def test_the_sql_headers_say_what_each_function_does() -> None:
    for path in FUNCTIONS_DIR.glob("fn_customer*.7.sql"):
        text = path.read_text(encoding="utf-8")
        assert re.match(r"-- fn_customer\w*: ", text), path.name
        assert "COMMENT ON FUNCTION" in text, path.name
