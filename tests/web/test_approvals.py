"""The Approvals page (phase 7) against a module database with phases 2–7 applied: an operator
sees a message awaiting approval with its draft and approves it in a real browser (the state
changes in the database); a reader sees no mail and no draft and cannot approve; an edit shows
what changed and voids the approval it had; a rejection is recorded with the operator's name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from web.approvals_support import (
    DRAFT_MARKER,
    MAIL_MARKER,
    Conn,
    awaiting_approval,
    prepare,
    state_of,
)
from web.support import PASSWORDS

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def web_dsn(dsn: str) -> str:
    return prepare(dsn)


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
