"""The Approvals pages when the console reads as a database role limited like conveyor_reader
(CONVEYOR_READ_DATABASE_URL logs in as a member of conveyor_reader, with the phase ledger):
the list and the facts come from the views, which that role may read; the mail and the draft
stay hidden even from an operator, and approving is refused — nobody here could have seen the
draft. Actions still go to the primary."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing

import httpx
import psycopg
import pytest
from psycopg import sql as q
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from helpers import wait_until
from web.approvals_support import (
    DRAFT_MARKER,
    MAIL_MARKER,
    Conn,
    awaiting_approval,
    prepare,
    state_of,
)
from web.support import PASSWORDS, csrf_of

ROLE = f"t_console_reader_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def web_dsn(dsn: str) -> str:
    return prepare(dsn)


@pytest.fixture(scope="module")
def console_env(web_dsn: str) -> Iterator[dict[str, str]]:
    secret = uuid.uuid4().hex
    name = q.Identifier(ROLE)
    with psycopg.connect(web_dsn, autocommit=True) as admin:
        admin.execute(
            q.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {} IN ROLE conveyor_reader").format(
                name, q.Literal(secret)
            )
        )
        admin.execute(q.SQL("GRANT USAGE ON SCHEMA conveyor_meta TO {}").format(name))
        admin.execute(q.SQL("GRANT SELECT ON conveyor_meta.phase_state TO {}").format(name))
    params = {k: str(v) for k, v in conninfo_to_dict(web_dsn).items() if v is not None}
    params.update(user=ROLE, password=secret)
    try:
        yield {"CONVEYOR_READ_DATABASE_URL": make_conninfo("", **params)}
    finally:
        with psycopg.connect(web_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (ROLE,),
            )
            wait_until(
                lambda: (
                    not admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE usename = %s", (ROLE,)
                    ).fetchall()
                ),
                timeout=30,
            )
            admin.execute(q.SQL("DROP OWNED BY {}").format(name))
            admin.execute(q.SQL("DROP ROLE {}").format(name))


def log_in(console_url: str, name: str) -> httpx.Client:
    """A client logged in as *name*, with the CSRF token of its session (from /approvals: the
    overview reads job_queue, which this role may not)."""
    client = httpx.Client(base_url=console_url, timeout=30)
    token = csrf_of(client.get("/login").text)
    form = {"csrf": token, "username": name, "password": PASSWORDS[name], "next": "/approvals"}
    assert client.post("/login", data=form).status_code == 303
    client.csrf = csrf_of(client.get("/approvals").text)  # type: ignore[attr-defined]
    return client


def test_without_conveyor_pii_an_operator_sees_no_draft_and_cannot_approve(
    console_url: str, sql: Conn
) -> None:
    message_id, digest = awaiting_approval(sql)
    with closing(log_in(console_url, "alice")) as alice:
        listing = alice.get("/approvals")
        page = alice.get(f"/approvals/{message_id}")

        assert f'data-message="{message_id}"' in listing.text
        assert page.status_code == 200 and "awaiting_approval" in page.text
        assert "has no <code>conveyor_pii</code>" in page.text
        for marker in (MAIL_MARKER, DRAFT_MARKER, "customer@example.invalid"):
            assert marker not in page.text
        assert "Approve this draft" not in page.text
        form = {"csrf": alice.csrf, "message_id": message_id, "draft_sha256": digest}  # type: ignore[attr-defined]
        refused = alice.post("/approvals/approve", data=form)
        assert refused.status_code == 403 and "no conveyor_pii" in refused.text
        assert state_of(sql, message_id)[:2] == ("awaiting_approval", None)

        rejected = {"csrf": alice.csrf, "message_id": message_id}  # type: ignore[attr-defined]
        assert alice.post("/approvals/reject", data=rejected).status_code == 303
        assert state_of(sql, message_id)[:3] == ("rejected", None, "alice")
