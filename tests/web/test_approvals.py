"""The Approvals page (phase 7) against a module database with phases 2–7 applied: an operator
sees a message awaiting approval with its draft and approves it in a real browser (the state
changes in the database); a reader sees no mail and no draft and cannot approve; an edit shows
what changed and voids the approval it had; a rejection is recorded with the operator's name."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conveyor.phases import runner
from web.support import PASSWORDS

CHROMIUM = "/usr/bin/chromium"
MAIL_MARKER = "MAIL-PII-91c2"
DRAFT_MARKER = "DRAFT-PII-5d0e"
FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "workflow.mot.enabled",
    "customer.channel.enabled",
)
Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def web_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 5, 6, 7):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
    return dsn


def _answer(conn: Conn, query: str, params: Any = ()) -> dict[str, Any]:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None and isinstance(row[0], dict), row
    return row[0]


def _claim_and_complete(conn: Conn, queue: str, kind: str, then: Callable[[], Any]) -> None:
    jobs = _answer(
        conn, "SELECT fn_job_claim(worker => 'tests', queues => ARRAY[%s], batch => 1)", (queue,)
    )["jobs"]
    assert [j["kind"] for j in jobs] == [kind]
    then()
    _answer(conn, "SELECT fn_job_complete(%s, %s)", (jobs[0]["job_id"], jobs[0]["lease_token"]))


def awaiting_approval(conn: Conn) -> tuple[int, str]:
    """A new message classified and drafted through its workflow's jobs; (id, draft hash)."""
    queue, account = f"q{uuid.uuid4().hex[:10]}", f"acct-{uuid.uuid4().hex[:8]}"
    got = _answer(
        conn,
        "SELECT fn_customer_message_ingest(%s, 'INBOX', 1, 1, NULL, now(), 'help please',"
        " 'customer@example.invalid', ARRAY['support@example.invalid'], '{}', NULL, NULL, NULL,"
        " %s, NULL, 40, '{}')",
        (account, f"my order is late {MAIL_MARKER}"),
    )
    message_id = int(got["id"])
    conn.execute(
        "UPDATE job_queue SET queue = %s WHERE workflow_id = %s"
        " AND kind <> 'customer_message_approve'",
        (queue, got["workflow_id"]),
    )
    _claim_and_complete(
        conn,
        queue,
        "customer_message_classify",
        lambda: _answer(
            conn, "SELECT fn_customer_message_classify(%s, 'support', 'tests')", (message_id,)
        ),
    )
    drafted: dict[str, Any] = {}
    _claim_and_complete(
        conn,
        queue,
        "customer_message_draft",
        lambda: drafted.update(
            _answer(
                conn,
                "SELECT fn_customer_message_draft(%s, 'Re: help please', %s, 'tests')",
                (message_id, f"Sorry, it ships today.\n{DRAFT_MARKER}"),
            )
        ),
    )
    assert drafted["state"] == "awaiting_approval"
    return message_id, str(drafted["draft_sha256"])


def state_of(conn: Conn, message_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state, approved_by, rejected_by, draft_sha256 FROM v_customer_message"
        " WHERE id = %s",
        (message_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_reader_sees_no_mail_and_no_draft_and_cannot_approve(
    login: Callable[[str], httpx.Client], sql: Conn
) -> None:
    message_id, digest = awaiting_approval(sql)
    rita = login("rita")
    listing = rita.get("/approvals")
    assert f'data-message="{message_id}"' in listing.text
    page = rita.get(f"/approvals/{message_id}")
    assert page.status_code == 200
    assert "awaiting_approval" in page.text
    for marker in (MAIL_MARKER, DRAFT_MARKER, "customer@example.invalid", "help please"):
        assert marker not in page.text and marker not in listing.text
    assert "Approve this draft" not in page.text
    form = {"csrf": rita.csrf, "message_id": message_id, "draft_sha256": digest}  # type: ignore[attr-defined]
    assert rita.post("/approvals/approve", data=form).status_code == 403
    assert state_of(sql, message_id)[:2] == ("awaiting_approval", None)


def test_an_approval_without_the_csrf_token_changes_nothing(
    login: Callable[[str], httpx.Client], sql: Conn
) -> None:
    message_id, digest = awaiting_approval(sql)
    alice = login("alice")
    answer = alice.post(
        "/approvals/approve", data={"message_id": message_id, "draft_sha256": digest}
    )
    assert answer.status_code == 403
    assert state_of(sql, message_id)[:2] == ("awaiting_approval", None)


def test_an_edit_shows_what_changed_and_the_old_draft_can_no_longer_be_approved(
    login: Callable[[str], httpx.Client], sql: Conn
) -> None:
    message_id, old_digest = awaiting_approval(sql)
    alice = login("alice")
    edited = alice.post(
        "/approvals/edit",
        data={
            "csrf": alice.csrf,  # type: ignore[attr-defined]
            "message_id": message_id,
            "subject": "Re: help please",
            "text": "Sorry: it ships tomorrow.",
        },
    )
    assert edited.status_code == 200, edited.text[:300]
    assert "What the edit changed" in edited.text
    assert '<span class="del">-Sorry, it ships today.</span>' in edited.text
    assert '<span class="add">+Sorry: it ships tomorrow.</span>' in edited.text
    state, approved_by, _, new_digest = state_of(sql, message_id)
    assert (state, approved_by) == ("awaiting_approval", None) and new_digest != old_digest

    stale = {"csrf": alice.csrf, "message_id": message_id, "draft_sha256": old_digest}  # type: ignore[attr-defined]
    answer = alice.post("/approvals/approve", data=stale, headers={"referer": "/approvals"})
    assert answer.status_code == 303
    assert "Not done" in alice.get("/approvals").text
    assert state_of(sql, message_id)[:2] == ("awaiting_approval", None)


def test_a_rejection_is_recorded_with_the_operators_name(
    login: Callable[[str], httpx.Client], sql: Conn
) -> None:
    message_id, _ = awaiting_approval(sql)
    alice = login("alice")
    form = {"csrf": alice.csrf, "message_id": message_id, "reason": "spam"}  # type: ignore[attr-defined]
    assert alice.post("/approvals/reject", data=form).status_code == 303
    assert state_of(sql, message_id)[:3] == ("rejected", None, "alice")


@pytest.fixture
def page(console_url: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs Chromium
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(base_url=console_url)
        context.set_default_timeout(20_000)  # a failure guard; pages answer in milliseconds
        yield context.new_page()
        browser.close()


def test_an_operator_approves_a_draft_in_the_browser(page: Any, sql: Conn) -> None:
    from playwright.sync_api import expect

    message_id, _ = awaiting_approval(sql)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Approvals").first.click()
    row = page.locator(f'tr[data-message="{message_id}"]')
    expect(row).to_contain_text("awaiting_approval")
    row.get_by_role("link", name=str(message_id)).click()
    expect(page.get_by_test_id("draft-text")).to_contain_text(DRAFT_MARKER)
    expect(page.get_by_test_id("mail-text")).to_contain_text(MAIL_MARKER)
    page.get_by_role("button", name="Approve this draft").click()

    expect(page.get_by_role("status")).to_contain_text(f"message {message_id} approved by alice")
    expect(page.get_by_test_id("state")).to_contain_text("approved")
    assert state_of(sql, message_id)[:2] == ("approved", "alice")
