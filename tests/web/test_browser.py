"""The console in a real browser: Debian's Chromium driven by Playwright, headless.

Skipped, with the reason, only when /usr/bin/chromium is absent (CI installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import scalar, wait_until
from web.support import PASSWORDS, SECRET_MARKER, dead_letter, enqueue, job_status, start_worker

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs Chromium
    pytest.skip(
        f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) to run the "
        "browser tests",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, console_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=console_url)
    context.set_default_timeout(20_000)  # a failure guard; pages answer in milliseconds
    opened = context.new_page()
    yield opened
    context.close()


def log_in(page: Page, name: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("viewer")).to_contain_text(name)


def paused_queues(sql: psycopg.Connection[Any]) -> list[str]:
    return list(
        scalar(
            sql,
            "SELECT coalesce((SELECT value FROM dot_config WHERE key = 'queue.paused_queues'),"
            " '[]')",
        )
    )


def test_an_operator_finds_a_dead_letter_and_replays_it(
    page: Page, sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_id = dead_letter(sql, queue)
    log_in(page, "alice")

    page.get_by_role("link", name="Dead letters").first.click()
    page.get_by_label("Queue").fill(queue)
    page.get_by_role("button", name="Filter").click()
    row = page.locator(f'tr[data-dead-letter="{dead_id}"]')
    expect(row).to_contain_text("boom: bad input")
    row.get_by_role("button", name="Replay").click()

    expect(page.get_by_role("status")).to_contain_text(f"replayed dead letter {dead_id} as job")
    resolved = sql.execute(
        "SELECT resolved_by, replayed_job_id FROM job_dead_letter WHERE id = %s", (dead_id,)
    ).fetchone()
    assert resolved is not None
    assert resolved[0] == "alice"
    assert job_status(sql, int(resolved[1])) == "queued"
    expect(page.locator(f'tr[data-dead-letter="{dead_id}"]')).to_have_count(0)


def test_pausing_a_queue_stops_a_real_worker_taking_its_jobs(
    page: Page, sql: psycopg.Connection[Any], web_dsn: str, queue: str, tmp_path: Path
) -> None:
    other = f"{queue}-other"
    worker = start_worker(web_dsn, tmp_path / "worker.log", queue, other)
    try:
        first = enqueue(sql, queue, payload={})
        wait_until(lambda: job_status(sql, first) == "succeeded", timeout=60)
        log_in(page, "alice")
        page.get_by_role("link", name="Queues").first.click()

        page.locator(f'tr[data-queue="{queue}"]').get_by_role("button", name="Pause").click()

        expect(page.get_by_role("status")).to_contain_text(f"paused queue {queue}")
        expect(page.locator(f'tr[data-queue="{queue}"]')).to_contain_text("paused")
        assert queue in paused_queues(sql)
        held = enqueue(sql, queue, payload={})
        # A job on the worker's other queue, enqueued after: once it is done, the worker has
        # claimed after the pause, and the paused queue's job is still waiting.
        probe = enqueue(sql, other, payload={})
        wait_until(lambda: job_status(sql, probe) == "succeeded", timeout=60)
        assert job_status(sql, held) == "queued"

        page.locator(f'tr[data-queue="{queue}"]').get_by_role("button", name="Resume").click()

        expect(page.get_by_role("status")).to_contain_text(f"resumed queue {queue}")
        wait_until(lambda: job_status(sql, held) == "succeeded", timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_reader_has_nothing_to_press_and_sees_no_payload(
    page: Page, sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_id = dead_letter(sql, queue)
    job_id = enqueue(sql, queue)
    log_in(page, "rita")

    for path in (
        "/queues",
        f"/dead-letters?queue={queue}",
        f"/dead-letters/{dead_id}",
        f"/jobs/{job_id}",
        "/components",
        "/",
    ):
        page.goto(path)
        expect(page.locator("main")).to_be_visible()
        assert SECRET_MARKER not in page.content(), path
        for label in ("Pause", "Resume", "Replay", "Forget"):
            expect(page.get_by_role("button", name=label)).to_have_count(0)

    refused = page.request.post(
        "/queues/pause", form={"csrf": _csrf(page), "queue": queue}, max_redirects=0
    )
    assert refused.status == 403
    assert queue not in paused_queues(sql)


def test_a_post_from_the_browser_without_the_csrf_token_is_refused(
    page: Page, sql: psycopg.Connection[Any], queue: str
) -> None:
    enqueue(sql, queue)
    log_in(page, "alice")

    refused = page.request.post("/queues/pause", form={"queue": queue}, max_redirects=0)

    assert refused.status == 403
    assert "CSRF" in refused.text()
    assert queue not in paused_queues(sql)


def _csrf(page: Page) -> str:
    value = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert value
    return value


def test_the_console_loads_nothing_from_another_site(
    page: Page, console_url: str, sql: psycopg.Connection[Any], queue: str
) -> None:
    """Every script and stylesheet is vendored: the pages work offline (no CDN)."""
    enqueue(sql, queue)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, "alice")

    for path in ("/", "/queues", "/jobs", "/dead-letters", "/components", "/phases"):
        page.goto(path)
    expect(page.locator("h1")).to_have_text("Phases")

    assert f"{console_url}/static/console.js" in requested
    assert [url for url in requested if not url.startswith(console_url)] == []
